"""Consistency distillation, the baseline of the paper's Table 1 as in the authors' code.

Starts from a flow-matching run (``teacher=RUN``): the teacher is that run's network, frozen, and the
student starts from its weights (the trainer does both). Every row is at the flow level, d = 1/M:

1. t = i/M with i uniform in {0, ..., M - 1} (grid time sampler; a continuous one is scaled to
   [0, 1 - 1/M]); x_t on the path.
2. One Euler step of the teacher: x' = clip(x_t + v_T(x_t, t, 1/M) / M, -clip, clip) at t' = t + 1/M.
3. The student's own prediction there (``target_network``: its EMA by default): v' = s(x', t', 1/M);
   x1_hat = x' + (1 - t') v'.
4. target = (x1_hat - x_t) / (1 - t): the straight jump from x_t to the data the student predicts.

The network only ever sees d = 1/M, so it is sampled with d = 1/M as its step-size input (the
authors' evaluation feeds the step actually taken, an input this network never trained on).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import path
from ..validation import Float, Text
from .base import Objective
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .knobs import knob
from .labels import class_labels
from .recipe import Recipe
from .schedule import consistency_velocity
from .time_samplers import start_times


@dataclass(kw_only=True)
class ConsistencyDistillation(Objective):
    """Consistency distillation: the jump to the data predicted after one Euler step of a flow-matching teacher.

    The teacher is the run named by ``teacher``, which the trainer loads and hands over as
    ``TargetNetworks.teacher``.
    """

    name = "consistency-distillation"
    title = "consistency distillation"
    recipe_source = (
        "kvfrans/shortcut-models: baselines/targets_consistency_distillation.py (the shortcut paper's "
        "baseline: teacher and student called through their EMA weights; true labels)"
    )
    row_kinds = ("consistency",)
    teacher_run = True
    teacher_objective = "flow"

    # grid times, mean squared error; the student's EMA predicts the data from the teacher's next point
    recipe: Recipe = Recipe(target_network="ema")
    teacher: str = knob("", Text("required for training"), "the flow-matching run or checkpoint to distil")
    clip: float = knob(4.0, Float(0.0, low_open=True), "bound on the points the teacher steps to")

    @property
    def sampling_d(self) -> float | None:
        """The network's step-size input is held at 1/M, where it was trained."""
        return 1.0 / self.max_steps

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """One teacher forward and one student forward per row (targets), then one forward and backward."""
        return 3.0, 1.0

    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """The frozen teacher is ``networks.teacher``, the student side the recipe's target network. Draw
        order after the noise: times."""
        t = start_times(self.recipe, batch.draws, 1.0 / self.max_steps)
        labels = class_labels(batch.y, len(batch.draws), self.num_classes, batch.device)
        return self.build(networks.pick("teacher"), self.recipe.target_net(networks), batch.x0, batch.x1, t, labels)

    def build(
        self,
        frozen: Network,
        student: Network,
        x0: torch.Tensor,
        x1: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
    ) -> Targets:
        """Targets for given noise, data, times and labels; ``frozen`` is the teacher, ``student`` the
        network that predicts the data from the teacher's next point."""
        d = torch.full_like(t, 1.0 / self.max_steps)
        x_t = path.interpolate(x0, x1, t)
        v_teacher = frozen(x_t, t, d, y).to(x1.dtype)
        x_next = (x_t + path.expand_like(d, x_t) * v_teacher).clamp(-self.clip, self.clip)
        v_next = student(x_next, t + d, d, y).to(x1.dtype)
        v = self.recipe.clamp(consistency_velocity(x_t, t, x_next, t + d, v_next))
        return Targets(x_t, t, d, v, y, torch.zeros_like(t, dtype=torch.long))
