"""The labels fed to the network: the data's, the null label (``num_classes``), and label dropout."""

from __future__ import annotations

import torch

from ..seeding import RowDraws


def class_labels(y: torch.Tensor | None, rows: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """Labels as given (int64 on ``device``), or the null label ``num_classes`` on every row when ``y`` is None."""
    if y is None:
        return null_labels(rows, num_classes, device)
    return y.to(device=device, dtype=torch.long)


def null_labels(rows: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """The null label ``num_classes`` on ``rows`` rows."""
    return torch.full((rows,), num_classes, dtype=torch.long, device=device)


def dropped_labels(y: torch.Tensor | None, draws: RowDraws, class_dropout: float, num_classes: int) -> torch.Tensor:
    """Labels of the draws' rows, each replaced by the null label with probability ``class_dropout`` (one
    uniform draw per row; none without labels or without dropout)."""
    labels = class_labels(y, len(draws), num_classes, draws.device)
    if y is not None and class_dropout > 0:
        drop = draws.uniform() < class_dropout
        labels = torch.where(drop, torch.full_like(labels, num_classes), labels)
    return labels
