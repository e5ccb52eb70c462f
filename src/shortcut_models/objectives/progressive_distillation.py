"""Progressive distillation, the baseline of the paper's Table 1 as in the authors' code.

Starts from a flow-matching run (``teacher=RUN``; the student starts from its weights). The run is cut
into K = log2 M equal stages; in stage s every row has level k = K - 1 - s (d = 2/M first, d = 1 last)
and the teacher is the network the stage started with:

1. t = i d with i uniform in {0, ..., 2^k - 1} (grid time sampler; a continuous one is scaled to
   [0, 1 - d]); x_t on the path.
2. Two half steps of the teacher T at d/2: v1 = T(x_t, t, d/2), x' = clip(x_t + v1 d/2, -clip, clip),
   v2 = T(x', t + d/2, d/2).
3. target = (v1 + v2) / 2: one step of size d that lands where the teacher's two steps land.

Stage 0's teacher is the flow-matching run's network; at the start of each later stage the teacher
takes the student's weights (``target_network``: its EMA by default), so each stage halves the step
count. The stage follows from the training progress; the trainer keeps the stage's teacher
(``TargetNetworks.teacher``), copies the weights in when :meth:`teacher_refresh` says so and saves the
teacher in every checkpoint, so a resumed run continues exactly. Sampled with the step size actually
taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import path
from ..validation import Float, Text
from .base import Objective
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .fixed_conditioning import velocities_at
from .knobs import knob
from .labels import class_labels
from .recipe import TARGET_NETWORKS, Recipe
from .schedule import num_levels, section, two_half_steps
from .time_samplers import start_times


@dataclass(kw_only=True)
class ProgressiveDistillation(Objective):
    """Progressive distillation: one step landing where two half steps of the stage's teacher land, K stages.

    Stage 0 distils the flow-matching run named by ``teacher``, which the trainer loads and hands over as
    ``TargetNetworks.teacher``; each later stage distils the student as the stage began.
    """

    name = "progressive-distillation"
    title = "progressive distillation"
    recipe_source = (
        "kvfrans/shortcut-models: baselines/targets_progressive.py (the shortcut paper's baseline: the "
        "stage's teacher through its EMA weights, bootstrap_ema=1; its network ignores d, here it sees the "
        "level) and train.py (the teacher renewed each stage)"
    )
    row_kinds = ("distillation",)
    min_max_steps = 2
    teacher_run = True
    teacher_objective = "flow"
    schedule_spans_run = True  # the stages are shares of the run

    # grid times, mean squared error; each later stage's teacher takes the student's EMA weights (the authors')
    recipe: Recipe = Recipe(target_network="ema")
    teacher: str = knob("", Text("required for training"), "the flow-matching run or checkpoint to distil")
    clip: float = knob(4.0, Float(0.0, low_open=True), "bound on the points the teacher steps to")

    def stage(self, progress: Progress) -> int:
        """Stage of the run at ``progress``: s = floor(step / (total / K))."""
        return section(progress.step, progress.total, num_levels(self.max_steps))

    def level(self, progress: Progress) -> int:
        """The level k = K - 1 - stage of the stage at ``progress``."""
        return num_levels(self.max_steps) - 1 - self.stage(progress)

    def teacher_refresh(self, progress: Progress) -> str | None:
        """At the first step of every stage but the first, the teacher takes the student's weights
        (the role named by ``target_network``)."""
        if progress.step == 0 or self.stage(progress) == self.stage(Progress(progress.step - 1, progress.total)):
            return None
        return TARGET_NETWORKS[self.recipe.target_network]

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """Two teacher forwards per row (two half steps), then one forward and backward."""
        return 3.0, 1.0

    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Targets of the stage at ``progress`` from its teacher (``networks.teacher``). Draw order
        after the noise: times."""
        d = 2.0 ** -self.level(progress)
        t = start_times(self.recipe, batch.draws, d)
        labels = class_labels(batch.y, len(batch.draws), self.num_classes, batch.device)
        return self.build(networks.pick("teacher"), batch.x0, batch.x1, t, labels, d)

    def build(
        self, teacher: Network, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, y: torch.Tensor, d: float
    ) -> Targets:
        """Targets for given noise, data, times, labels and step size ``d``."""
        d = torch.full_like(t, d)
        x_t = path.interpolate(x0, x1, t)
        v = self.recipe.clamp(two_half_steps(velocities_at(teacher, y, x1.dtype), x_t, t, d, self.clip))
        return Targets(x_t, t, d, v, y, torch.zeros_like(t, dtype=torch.long))
