"""Improved precision and recall (Kynkäänniemi et al., 2019) from k-nearest-neighbour manifolds.

Each set's manifold is the union of balls around its points, each ball reaching the point's k-th
nearest neighbour in the same set (k = 3). Precision is the share of generated samples inside the
real manifold: samples that look like data (1 - precision counts the failed ones). Recall is the
share of real points inside the generated manifold: how much of the data's variety is covered.
Distances are Euclidean in a feature space (Inception pool features, or the digits CNN's), in float64,
computed in blocks so memory stays O(block x N).
"""

from __future__ import annotations

import torch

__all__ = ["knn_radii", "precision_recall"]


def knn_radii(points: torch.Tensor, k: int, block: int = 4096) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set (the first is itself)."""
    if points.shape[0] <= k:
        raise ValueError(f"precision/recall with k = {k} need more than {k} rows in each set, got {points.shape[0]}")
    points = points.double()
    return torch.cat([torch.cdist(chunk, points).kthvalue(k + 1, dim=1).values for chunk in points.split(block)])


def _covered(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int) -> torch.Tensor:
    """For each query: does any ball (centre, radius) contain it?"""
    return torch.cat([(torch.cdist(chunk, centres) <= radii).any(dim=1) for chunk in queries.split(block)])


def precision_recall(generated: torch.Tensor, real: torch.Tensor, k: int = 3, block: int = 4096) -> tuple[float, float]:
    """(precision, recall) of ``generated`` [N, D] against ``real`` [M, D]."""
    if generated.ndim != 2 or real.ndim != 2 or generated.shape[1] != real.shape[1]:
        raise ValueError(
            f"precision/recall need [N, D] and [M, D] features, got {tuple(generated.shape)} and {tuple(real.shape)}"
        )
    fake, data = generated.detach().cpu().double(), real.detach().cpu().double()
    precision = _covered(fake, data, knn_radii(data, k, block), block).double().mean()
    recall = _covered(data, fake, knn_radii(fake, k, block), block).double().mean()
    return float(precision), float(recall)
