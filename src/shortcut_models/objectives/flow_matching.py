"""Flow matching, the baseline ("naive" in the authors' code).

Every row is a flow-matching row: t uniform on the grid {0, 1/M, ..., (M-1)/M}, the network's step
size input held at d = 1/M (the finest level), target v = x1 - (1 - eps) x0. Labels are dropped to
the null label (num_classes) with probability ``class_dropout``; unconditional data (y=None) uses
the null label everywhere.

Random draws are made per global row (:class:`~shortcut_models.seeding.RowDraws`): a process
holding some rows of a global batch gets exactly the noise, times and dropouts that a single process
holding the whole batch gets for those rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import path
from ..seeding import RowDraws, RowShare
from ..validation import check_float, check_int
from .base import Objective, Targets, regression_loss


def null_labels(batch: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """The null (unconditional) label ``num_classes`` for every row."""
    return torch.full((batch,), num_classes, dtype=torch.long, device=device)


@dataclass
class FlowMatching(Objective):
    """Flow-matching objective on the same network interface as the shortcut objective.

    Args:
        num_classes: number of real classes; label ``num_classes`` is the null label (0 for
            unconditional models, whose table then holds only the null row).
        class_dropout: probability of replacing a label by the null label.
        max_steps: M, the finest step count (128); flow rows use d = 1/M.
    """

    num_classes: int = 0
    class_dropout: float = 0.0
    max_steps: int = 128

    name = "flow"
    title = "flow matching"

    def __post_init__(self) -> None:
        check_common(self.num_classes, self.class_dropout, self.max_steps)

    @property
    def sampling_d(self) -> float | None:
        """The step size a sampler feeds this objective's models: always 1/M."""
        return 1.0 / self.max_steps

    def select_teacher(self, model: nn.Module, ema_model: nn.Module) -> nn.Module | None:
        """Flow matching needs no teacher."""
        return None

    @torch.no_grad()
    def targets(
        self,
        teacher: nn.Module | None,
        x1: torch.Tensor,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        x0: torch.Tensor | None = None,
        rows: RowShare | None = None,
    ) -> Targets:
        """Flow-matching targets for every row of x1 (``teacher`` is unused; noise ``x0`` drawn if None)."""
        draws = RowDraws.for_batch(x1.shape[0], generator, x1.device, rows)
        no_bootstrap = torch.zeros(x1.shape[0], dtype=torch.bool, device=x1.device)
        return self.flow_rows(x1, y, draws, no_bootstrap, x0)

    def flow_rows(
        self,
        x1: torch.Tensor,
        y: torch.Tensor | None,
        draws: RowDraws,
        bootstrap: torch.Tensor,
        x0: torch.Tensor | None = None,
    ) -> Targets:
        """Flow rows for every row of x1 (noise ``x0`` drawn if not given); the shortcut objective
        then overwrites its self-consistency rows. Draw order: noise, times, label dropout."""
        b, device = x1.shape[0], x1.device
        m = self.max_steps
        x0 = draws.normal(tuple(x1.shape[1:]), x1.dtype) if x0 is None else x0
        t = draws.integers(m).float() / m
        d = torch.full((b,), 1.0 / m, device=device)
        labels = self.dropped_labels(y, draws)
        return Targets(path.interpolate(x0, x1, t), t, d, path.velocity(x0, x1), labels, bootstrap)

    def dropped_labels(self, y: torch.Tensor | None, draws: RowDraws) -> torch.Tensor:
        """Labels of the draws' rows after dropout to the null label with probability ``class_dropout``."""
        if y is None:
            return null_labels(len(draws), self.num_classes, draws.device)
        y = y.to(device=draws.device, dtype=torch.long)
        if self.class_dropout > 0:
            drop = draws.uniform() < self.class_dropout
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        return y

    def loss(self, model: nn.Module, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MSE over the batch; logs hold the loss and its flow part (every row is a flow row)."""
        loss, logs = regression_loss(model, targets)
        logs.pop("loss_consistency")
        return loss, logs


def check_common(num_classes: int, class_dropout: float, max_steps: int) -> None:
    """Range checks of the knobs every objective here shares (ValueError naming the knob)."""
    check_int("num_classes", num_classes, low=0)
    check_float("class_dropout", class_dropout, 0.0, 1.0)
    check_int("max_steps", max_steps, low=1)
    if max_steps & (max_steps - 1):
        raise ValueError(f"max_steps must be a power of two, got {max_steps}")
