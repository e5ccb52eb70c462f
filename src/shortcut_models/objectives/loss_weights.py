"""Loss weights: how the squared error of each row becomes that row's loss (a recipe part).

Every objective's loss is the mean over rows of ``LOSS_WEIGHTS[loss_weight](sq, knobs)``, where
``sq`` [B, D] holds the squared errors of each row's D elements and ``knobs`` is the method's recipe
(:class:`~.recipe.Recipe`: its ``adaptive_power``, ``adaptive_eps``, ``huber_c``):

- ``mse``: the mean of the row's squared errors (flow matching, shortcut and the paper's baselines);
- ``adaptive``: MeanFlow's adaptive weight, s / sg(s + eps)^p with s the row's sum of squares and sg
  a stopped gradient (p = 0 is the plain sum of squares);
- ``pseudo-huber``: sqrt(s + c^2) - c with c = huber_c * sqrt(D) (the consistency-training
  literature's robust loss; huber_c = 0.00054 as Song and Dhariwal's improved consistency training).

Adding a loss weight: one function below and one line in :data:`LOSS_WEIGHTS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch


def mse(sq: torch.Tensor, knobs: Any) -> torch.Tensor:  # noqa: ARG001 - every weight has this signature
    """Mean squared error of each row."""
    return sq.mean(dim=1)


def adaptive(sq: torch.Tensor, knobs: Any) -> torch.Tensor:
    """Sum of squares s of each row divided by (its stopped value + adaptive_eps) ** adaptive_power."""
    s = sq.sum(dim=1)
    return (s.detach() + knobs.adaptive_eps) ** -knobs.adaptive_power * s


def pseudo_huber(sq: torch.Tensor, knobs: Any) -> torch.Tensor:
    """sqrt(s + c^2) - c of each row's sum of squares s, c = huber_c sqrt(elements per row)."""
    c = knobs.huber_c * math.sqrt(sq.shape[1])
    return torch.sqrt(sq.sum(dim=1) + c * c) - c


LOSS_WEIGHTS: dict[str, Callable[[torch.Tensor, Any], torch.Tensor]] = {
    "mse": mse,
    "adaptive": adaptive,
    "pseudo-huber": pseudo_huber,
}


def per_row_loss(name: str, sq: torch.Tensor, knobs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss of each row under weight ``name``, mean squared error of each row) from squared errors ``sq`` [B, D]."""
    return LOSS_WEIGHTS[name](sq, knobs), sq.detach().mean(dim=1)
