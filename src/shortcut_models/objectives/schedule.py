"""Pieces shared by the objectives that follow a schedule over training or jump to the data.

Conventions: t = 0 noise, t = 1 data; d is a step size; level k means d = 2^-k; M = max_steps and
K = log2 M (the flow level, d = 1/M).
"""

from __future__ import annotations

import torch

from .. import path
from ..seeding import RowDraws, RowShare


def num_levels(max_steps: int) -> int:
    """K = log2 M."""
    return max_steps.bit_length() - 1


def section(step: int, total_steps: int, sections: int) -> int:
    """Which of ``sections`` equal parts of a ``total_steps``-step run step ``step`` (0-based) is in.

    Equals the authors' ``floor(step / (total_steps / sections))`` (computed in integers), capped at
    the last section.
    """
    return min(sections - 1, (step * sections) // max(total_steps, 1))


def grid_draws(
    x1: torch.Tensor,
    y: torch.Tensor | None,
    num_classes: int,
    cells: int,
    generator: torch.Generator | None,
    x0: torch.Tensor | None,
    rows: RowShare | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noise, times, labels) of every row: noise drawn when ``x0`` is None, then t = i / cells with i
    uniform in {0, ..., cells - 1}; labels as given (the null label when ``y`` is None)."""
    draws = RowDraws.for_batch(x1.shape[0], generator, x1.device, rows)
    x0 = draws.normal(tuple(x1.shape[1:]), x1.dtype) if x0 is None else x0
    t = draws.integers(cells).float() / cells
    labels = torch.full((x1.shape[0],), num_classes, dtype=torch.long, device=x1.device) if y is None else y.long()
    return x0, t, labels


def consistency_velocity(
    x_t: torch.Tensor, t: torch.Tensor, x_next: torch.Tensor, t_next: torch.Tensor, v_next: torch.Tensor
) -> torch.Tensor:
    """The velocity that carries ``x_t`` (time t) in one straight jump to the data predicted from a
    later point: x1_hat = x_next + (1 - t_next) v_next, target = (x1_hat - x_t) / (1 - t)."""
    x1_hat = x_next + path.expand_like(1 - t_next, x_next) * v_next
    return (x1_hat - x_t) / path.expand_like(1 - t, x_t)
