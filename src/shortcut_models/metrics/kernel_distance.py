"""Kernel Inception Distance (Bińkowski et al., 2018): an unbiased MMD^2 between two feature sets.

The kernel is the cubic polynomial k(a, b) = (a.b / D + 1)^3 on D-dimensional features. The estimate
is averaged over ``subsets`` random subsets of ``subset_size`` rows from each set (100 of 1,000,
torch-fidelity's defaults; smaller sets use all their rows); the spread is the standard deviation over
subsets. Unlike the Fréchet distance it is unbiased in the number of samples, so small evaluations
can be compared with large ones. Computed in float64 with a fixed seed.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["kernel_distance"]


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    d, m = x.shape[1], x.shape[0]
    k_xx, k_yy, k_xy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    off_diagonal = (k_xx.sum() - k_xx.diagonal().sum()) + (k_yy.sum() - k_yy.diagonal().sum())
    return float(off_diagonal / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))


def kernel_distance(
    features: torch.Tensor, reference: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 2020
) -> tuple[float, float]:
    """(mean, std) of KID between ``features`` and ``reference`` ([N, D] and [M, D])."""
    if features.ndim != 2 or reference.ndim != 2 or features.shape[1] != reference.shape[1]:
        raise ValueError(
            f"KID needs [N, D] and [M, D] features, got {tuple(features.shape)} and {tuple(reference.shape)}"
        )
    size = min(subset_size, features.shape[0], reference.shape[0])
    if size < 2:
        raise ValueError("KID needs at least 2 rows in each set")
    x, y = features.detach().cpu().double(), reference.detach().cpu().double()
    rng = np.random.RandomState(seed)
    values = [
        _mmd2_unbiased(
            x[torch.from_numpy(rng.choice(x.shape[0], size, replace=False))],
            y[torch.from_numpy(rng.choice(y.shape[0], size, replace=False))],
        )
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))
