"""What every objective returns, and the loss they share."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Targets:
    """One training batch, built without gradient; row i comes from data row i.

    x_t: points on the path (t = 0 noise, t = 1 data); t, d: time and step size per row ([B] float);
    v: regression target (the path velocity on flow rows, the teacher's two-half-step average on
    self-consistency rows); y: labels fed to the network (null = num_classes); bootstrap: bool [B],
    True on self-consistency rows.
    """

    x_t: torch.Tensor
    t: torch.Tensor
    d: torch.Tensor
    v: torch.Tensor
    y: torch.Tensor
    bootstrap: torch.Tensor


def regression_loss(model: nn.Module, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean squared error over every element of the batch (one mean over all rows).

    The logs hold the loss and its flow and self-consistency parts, each the mean over its own rows
    (NaN where a part has no rows). They are detached tensors, so logging costs no host sync until
    the caller reads them.
    """
    pred = model(targets.x_t, targets.t, targets.d, targets.y)
    per_row = (pred.float() - targets.v.float()).pow(2).flatten(1).mean(dim=1)
    loss = per_row.mean()
    with torch.no_grad():
        mask = targets.bootstrap.to(per_row.dtype)
        n_boot = mask.sum()
        n_flow = mask.numel() - n_boot
        logs = {
            "loss": loss.detach(),
            "loss_flow": (per_row * (1 - mask)).sum() / n_flow,
            "loss_consistency": (per_row * mask).sum() / n_boot,
        }
    return loss, logs
