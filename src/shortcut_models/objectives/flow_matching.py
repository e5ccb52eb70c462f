"""Flow matching, the baseline ("naive" in the authors' code).

Every row is a flow-matching row: t from the time sampler (default: the grid {0, 1/M, ..., (M-1)/M}),
the network's step size input held at d = 1/M (the finest level), target v = x1 - (1 - eps) x0.
Labels are dropped to the null label (num_classes) with probability ``class_dropout``; unconditional
data (y=None) uses the null label everywhere. :func:`flow_rows` builds these rows; shortcut and live
reflow build theirs with it, then replace their own leading rows.

Random draws are made per global row (:class:`~shortcut_models.seeding.RowDraws`): a process
holding some rows of a global batch gets exactly the noise, times and dropouts that a single process
holding the whole batch gets for those rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import path
from ..validation import Float
from .base import Objective
from .batch import Batch, Progress, TargetNetworks, Targets
from .knobs import knob
from .labels import dropped_labels
from .recipe import Recipe
from .time_samplers import times


@dataclass(kw_only=True)
class FlowMatching(Objective):
    """Flow matching: every row regresses the path velocity x1 - (1 - eps) x0 at d = 1/M (the baseline)."""

    name = "flow"
    title = "flow matching"
    recipe_source = (
        "kvfrans/shortcut-models: baselines/targets_naive.py (the shortcut paper's flow-matching baseline: "
        "grid times i/128) and train.py (squared error; the network ignores d, held at 1/M here; its label "
        "dropout 0.1 is named here by the presets with labels)"
    )

    recipe: Recipe = Recipe()  # grid times, mean squared error; no target network
    class_dropout: float = knob(0.0, Float(0.0, 1.0), "probability of the null label on flow-matching rows")

    @property
    def sampling_d(self) -> float | None:
        """The step size a sampler feeds this objective's models: always 1/M."""
        return 1.0 / self.max_steps

    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Flow-matching targets for every row (no network). Draw order after the noise: times, label dropout."""
        return flow_rows(batch, self.recipe, self.max_steps, self.class_dropout, self.num_classes, kind=0)


def flow_rows(
    batch: Batch, recipe: Recipe, max_steps: int, class_dropout: float, num_classes: int, kind: int
) -> Targets:
    """Flow-matching rows for every row of ``batch``, all of kind ``kind``: t from the recipe's time sampler
    (``max_steps`` cells on the grid), d = 1/M, labels dropped with probability ``class_dropout``. Draw order:
    times, label dropout."""
    x0, x1, draws = batch.x0, batch.x1, batch.draws
    t = times(recipe, draws, max_steps)
    d = torch.full((x1.shape[0],), 1.0 / max_steps, device=x1.device)
    labels = dropped_labels(batch.y, draws, class_dropout, num_classes)
    kinds = torch.full((x1.shape[0],), kind, dtype=torch.long, device=x1.device)
    return Targets(path.interpolate(x0, x1, t), t, d, path.velocity(x0, x1), labels, kinds)
