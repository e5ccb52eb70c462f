"""Sliced Wasserstein distance between two point clouds of equal size."""

from __future__ import annotations

import torch


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, num_projections: int = 256, seed: int = 0) -> float:
    """Root of the mean over random unit directions of the squared 1-D Wasserstein-2 distance.

    ``a`` and ``b`` are [N, D] with the same N; directions come from ``seed``, so the same inputs
    give the same number. Computed in float64.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"sliced_wasserstein needs two [N, D] arrays of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], num_projections, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa = torch.sort(a.double().cpu() @ dirs, dim=0).values
    pb = torch.sort(b.double().cpu() @ dirs, dim=0).values
    return float((pa - pb).pow(2).mean().sqrt())
