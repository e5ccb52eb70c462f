"""An objective written outside the package, in one file: flow matching whose velocity target is scaled.

The worked example of docs/architecture.md ("Adding an objective"). tests/objectives/test_registry.py
loads this file and registers its class with one line; nothing else is touched, and the objective trains,
samples, runs in a study and appears in the docs' list of objectives.
"""

from dataclasses import dataclass

from shortcut_models.objectives.base import Objective
from shortcut_models.objectives.batch import Batch, Progress, TargetNetworks, Targets
from shortcut_models.objectives.flow_matching import flow_rows
from shortcut_models.objectives.knobs import knob
from shortcut_models.objectives.recipe import Recipe
from shortcut_models.validation import Float


@dataclass(kw_only=True)
class ScaledFlow(Objective):
    """Scaled flow matching: flow matching whose velocity target is multiplied by ``scale``."""

    name = "scaled-flow"
    title = "scaled flow matching"

    recipe: Recipe = Recipe()  # grid times, mean squared error; no network builds the targets
    scale: float = knob(1.0, Float(), "factor of the velocity target")  # `shortcut train ... scale=2`

    @property
    def sampling_d(self) -> float | None:
        return 1.0 / self.max_steps  # flow matching's network only sees the finest step

    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        targets = flow_rows(batch, self.recipe, self.max_steps, 0.0, self.num_classes, kind=0)
        targets.v = targets.v * self.scale
        return targets
