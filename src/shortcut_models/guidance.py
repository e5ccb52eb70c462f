"""Guidance as a network input (iMF): the per-row tensor that networks built with ``guidance_input=True`` take.

``model(x_t, t, d, y, guidance=g)`` with ``g`` float [B, 3], one row per sample: the guidance scale
w >= 1 (1: none) and the interval [lo, hi] of times (t = 0 noise, t = 1 data) where it applies. The
network learns the guided velocity itself, so a sampler makes one network pass per step whatever w
(no unconditional second pass). Objectives, the sampler and the networks build this tensor here, so
its layout lives in one place.
"""

from __future__ import annotations

import torch

COLUMNS = ("scale", "lo", "hi")  # the columns of a guidance tensor [B, 3]
EVERYWHERE = (0.0, 1.0)  # the interval of guidance at every time


def rows(
    scale: float | torch.Tensor,
    lo: float | torch.Tensor,
    hi: float | torch.Tensor,
    count: int,
    device: torch.device | str,
) -> torch.Tensor:
    """The guidance input [count, 3] (float32): scale w on the times [lo, hi]; each a number or one per row."""
    cols = [torch.as_tensor(c, dtype=torch.float32, device=device).expand(count) for c in (scale, lo, hi)]
    return torch.stack(cols, dim=1)


def none(count: int, device: torch.device | str) -> torch.Tensor:
    """The guidance input of an unguided call: w = 1 on [0, 1]."""
    return rows(1.0, *EVERYWHERE, count, device)


def check_interval(lo: float, hi: float) -> tuple[float, float]:
    """(lo, hi) as floats; ValueError unless 0 <= lo <= hi <= 1."""
    lo, hi = float(lo), float(hi)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"the guidance interval must satisfy 0 <= lo <= hi <= 1, got [{lo}, {hi}]")
    return lo, hi
