"""Progressive distillation, the baseline of the paper's Table 1 as in the authors' code.

Starts from a flow-matching run (``teacher=RUN``; the student starts from its weights). The run is cut
into K = log2 M equal stages; in stage s every row has level k = K - 1 - s (d = 2/M first, d = 1 last)
and the teacher is the network the stage started with:

1. t = i d with i uniform in {0, ..., 2^k - 1}; x_t on the path.
2. Two half steps of the teacher T at d/2: v1 = T(x_t, t, d/2), x' = clip(x_t + v1 d/2, -clip, clip),
   v2 = T(x', t + d/2, d/2).
3. target = (v1 + v2) / 2: one step of size d that lands where the teacher's two steps land.

Stage 0's teacher is the flow-matching run's network; at the start of each later stage the teacher
takes the student's weights (its EMA when ``bootstrap_ema``), so each stage halves the step count.
The trainer does the hand-over at :meth:`teacher_refresh` and saves the teacher in every checkpoint,
so a resumed run continues exactly. Sampled with the step size actually taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import path
from ..seeding import RowShare
from .base import Targets
from .distillation import FlowTeacherDistillation
from .schedule import grid_draws, num_levels, section


@dataclass
class ProgressiveDistillation(FlowTeacherDistillation):
    """Progressive distillation of a flow-matching teacher, K stages in one run.

    Args:
        num_classes: real classes; label ``num_classes`` is the null label (0 = unconditional).
        teacher: the flow-matching run (or checkpoint) that stage 0 distils; required for training.
        bootstrap_ema: each later stage's teacher is the student's EMA (True, authors) or online network.
        max_steps: M; the first stage distils 2 teacher steps of 1/M into one of 2/M.
        clip: bound on the teacher's midpoint (4).
    """

    name = "progressive-distillation"
    title = "progressive distillation"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_steps < 2:
            raise ValueError("max_steps must be >= 2 for progressive distillation")
        self.stage, self._total = 0, 0

    @property
    def sampling_d(self) -> float | None:
        """Fed the step size actually taken."""
        return None

    @property
    def level(self) -> int:
        """The level k = K - 1 - stage of the current stage."""
        return num_levels(self.max_steps) - 1 - self.stage

    def begin_step(self, step: int, total_steps: int) -> None:
        """Stage of the run: s = floor(step / (total_steps / K))."""
        self.stage, self._total = section(step, total_steps, num_levels(self.max_steps)), total_steps

    def teacher_refresh(self, step: int, model: nn.Module, ema_model: nn.Module) -> nn.Module | None:
        """At the first step of every stage but the first, the teacher becomes the student."""
        k = num_levels(self.max_steps)
        starts = step > 0 and section(step, self._total, k) != section(step - 1, self._total, k)
        return (ema_model if self.bootstrap_ema else model) if starts else None

    def select_teacher(self, model: nn.Module, ema_model: nn.Module) -> nn.Module:
        """The stage's teacher (bound by the trainer)."""
        return self.bound_teacher()

    @torch.no_grad()
    def targets(
        self,
        teacher: nn.Module,
        x1: torch.Tensor,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        x0: torch.Tensor | None = None,
        rows: RowShare | None = None,
    ) -> Targets:
        """Targets of the current stage (see :meth:`begin_step`). Draw order: noise, grid positions."""
        x0, t, labels = grid_draws(x1, y, self.num_classes, 2**self.level, generator, x0, rows)
        return self.build(teacher, x0, x1, t, labels)

    def build(
        self, teacher: nn.Module, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, y: torch.Tensor
    ) -> Targets:
        """Targets for given noise, data, times and labels at the current stage."""
        d = torch.full_like(t, 2.0**-self.level)
        half = d / 2
        x_t = path.interpolate(x0, x1, t)
        v1 = teacher(x_t, t, half, y).to(x1.dtype)
        x_mid = (x_t + path.expand_like(half, x_t) * v1).clamp(-self.clip, self.clip)
        v2 = teacher(x_mid, t + half, half, y).to(x1.dtype)
        return Targets(x_t, t, d, (v1 + v2) / 2, y, torch.ones_like(t, dtype=torch.bool))
