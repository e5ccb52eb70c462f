"""Improved precision and recall (Kynkäänniemi et al., 2019) from k-nearest-neighbour manifolds.

Each set of features spans a manifold: the union of balls around its points, each with the radius of
the distance to its k-th nearest neighbour in the same set. Precision is the share of generated
samples inside the real manifold (1 - precision: the share of failed samples, those like no real
one); recall is the share of real samples inside the generated manifold (the variety covered).
"""

from __future__ import annotations

import torch


def knn_radii(features: torch.Tensor, k: int, block: int = 2048) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row (float64)."""
    x = features.double()
    if x.shape[0] <= k:
        raise ValueError(f"need more than k={k} samples, got {x.shape[0]}")
    radii = []
    for chunk in x.split(block):
        dist = torch.cdist(chunk, x)
        radii.append(dist.kthvalue(k + 1, dim=1).values)  # the 1st is the point itself (distance 0)
    return torch.cat(radii)


def coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int = 2048) -> torch.Tensor:
    """Per point of ``points``: whether it lies in some ball (centre, radius)."""
    inside = []
    for chunk in points.double().split(block):
        inside.append((torch.cdist(chunk, centres.double()) <= radii[None]).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of generated features ``fake`` against real features ``real`` ([N, D] each)."""
    precision = coverage(fake, real, knn_radii(real, k)).double().mean().item()
    recall = coverage(real, fake, knn_radii(fake, k)).double().mean().item()
    return precision, recall
