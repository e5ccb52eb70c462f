"""Consistency distillation, the baseline of the paper's Table 1 as in the authors' code.

Starts from a flow-matching run (``teacher=RUN``): the teacher is that run's network, frozen, and the
student starts from its weights (the trainer does both). Every row is at the flow level, d = 1/M:

1. t = i/M with i uniform in {0, ..., M - 1}; x_t on the path.
2. One Euler step of the teacher: x' = clip(x_t + v_T(x_t, t, 1/M) / M, -clip, clip) at t' = t + 1/M.
3. The student's own prediction there (its EMA when ``bootstrap_ema``): v' = s(x', t', 1/M);
   x1_hat = x' + (1 - t') v'.
4. target = (x1_hat - x_t) / (1 - t): the straight jump from x_t to the data the student predicts.

The network only ever sees d = 1/M, so it is sampled with d = 1/M as its step-size input (the
authors' evaluation feeds the step actually taken, an input this network never trained on).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import path
from ..seeding import RowShare
from .base import Targets
from .distillation import FlowTeacherDistillation
from .schedule import consistency_velocity, grid_draws


@dataclass
class ConsistencyDistillation(FlowTeacherDistillation):
    """Consistency distillation of a flow-matching teacher.

    Args:
        num_classes: real classes; label ``num_classes`` is the null label (0 = unconditional).
        teacher: the flow-matching run (or checkpoint) to distil; required for training.
        bootstrap_ema: the student's side of the target uses its EMA (True, authors) or online network.
        max_steps: M; the teacher takes one step of 1/M.
        clip: bound on the teacher's next point (4).
    """

    name = "consistency-distillation"
    title = "consistency distillation"

    @property
    def sampling_d(self) -> float | None:
        """The network's step-size input is held at 1/M, where it was trained."""
        return 1.0 / self.max_steps

    def select_teacher(self, model: nn.Module, ema_model: nn.Module) -> nn.Module:
        """The student network that predicts the data at the next point (the frozen teacher is bound)."""
        return ema_model if self.bootstrap_ema else model

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
        """``teacher`` is the student side (see :meth:`select_teacher`). Draw order: noise, times."""
        x0, t, labels = grid_draws(x1, y, self.num_classes, self.max_steps, generator, x0, rows)
        return self.build(self.bound_teacher(), teacher, x0, x1, t, labels)

    def build(
        self,
        frozen: nn.Module,
        student: nn.Module,
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
        v = consistency_velocity(x_t, t, x_next, t + d, v_next)
        return Targets(x_t, t, d, v, y, torch.ones_like(t, dtype=torch.bool))
