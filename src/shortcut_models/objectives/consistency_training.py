"""Consistency training, the baseline of the paper's Table 1 as in the authors' code.

No teacher run: the targets come from the network itself (its EMA when ``bootstrap_ema``). The step
size follows a curriculum over training: the run is cut into K = log2 M equal sections and in section
k every row has level k, d = 2^-k (d = 1 first, d = 2/M last). Each row:

1. t = i d with i uniform in {0, ..., 2^k - 1}; x_t and x_{t+d} lie on the path of the same noise.
2. v' = s(x_{t+d}, t + d, d, y) with s the teacher; x1_hat = x_{t+d} + (1 - t - d) v'.
3. target = (x1_hat - x_t) / (1 - t): the straight jump from x_t to the data the teacher predicts.

The network is trained at (x_t, t, d) and sampled with the step size actually taken. Labels are the
true labels (no dropout). Every row is built with the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import path
from ..seeding import RowShare
from ..validation import check_bool
from .base import EveryRowTeacher, Targets
from .flow_matching import check_common
from .schedule import consistency_velocity, grid_draws, num_levels, section


@dataclass
class ConsistencyTraining(EveryRowTeacher):
    """Consistency training with the authors' step-size curriculum.

    Args:
        num_classes: real classes; label ``num_classes`` is the null label (0 = unconditional).
        bootstrap_ema: the teacher is the EMA network (True, authors) or the online network.
        max_steps: M, the finest step count; the curriculum runs through levels 0..K-1, K = log2 M.
    """

    num_classes: int = 0
    bootstrap_ema: bool = True
    max_steps: int = 128

    name = "consistency-training"
    title = "consistency training"

    def __post_init__(self) -> None:
        check_common(self.num_classes, 0.0, self.max_steps)
        check_bool("bootstrap_ema", self.bootstrap_ema)
        if self.max_steps < 2:
            raise ValueError("max_steps must be >= 2 for consistency training")
        self.level = 0

    @property
    def sampling_d(self) -> float | None:
        """Fed the step size actually taken."""
        return None

    def begin_step(self, step: int, total_steps: int) -> None:
        """Level of the curriculum: k = floor(step / (total_steps / K))."""
        self.level = section(step, total_steps, num_levels(self.max_steps))

    def select_teacher(self, model: nn.Module, ema_model: nn.Module) -> nn.Module:
        return ema_model if self.bootstrap_ema else model

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """One teacher forward per row, then one forward and backward."""
        return 2.0, 1.0

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
        """Targets at the current level (see :meth:`begin_step`). Draw order: noise, grid positions."""
        x0, t, labels = grid_draws(x1, y, self.num_classes, 2**self.level, generator, x0, rows)
        return self.build(teacher, x0, x1, t, labels)

    def build(
        self, teacher: nn.Module, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, y: torch.Tensor
    ) -> Targets:
        """Targets for given noise ``x0``, data ``x1``, times ``t`` and labels ``y`` at the current level."""
        d = torch.full_like(t, 2.0**-self.level)
        x_t = path.interpolate(x0, x1, t)
        x_next = path.interpolate(x0, x1, t + d)
        v_next = teacher(x_next, t + d, d, y).to(x1.dtype)
        v = consistency_velocity(x_t, t, x_next, t + d, v_next)
        return Targets(x_t, t, d, v, y, torch.ones_like(t, dtype=torch.bool))
