"""Improved precision and recall: k-nearest-neighbour balls, checked on point sets with known answers."""

import pytest
import torch

from shortcut_models.metrics import precision_recall
from shortcut_models.metrics.precision_recall import knn_radii


def test_radii_are_kth_neighbour_distances():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(x, 2).tolist() == [3.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="more than 4 rows"):
        knn_radii(x, 4)


def test_known_precision_and_recall():
    real = torch.arange(10.0)[:, None]  # balls of radius 1 (k = 1)
    fake = torch.tensor([[0.5], [4.2], [20.0], [30.0]])  # half of them near the data
    precision, recall = precision_recall(fake, real, k=1)
    assert precision == 0.5
    # fake radii (k = 1): 3.7, 3.7, 10, 10 -> real points within 3.7 of 0.5 or 4.2: 0..7; none within 10 of 20 or 30
    assert recall == 0.8


def test_the_same_set_has_full_precision_and_recall():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    assert precision_recall(x, x.clone(), k=3) == (1.0, 1.0)
    far = x + 100
    assert precision_recall(far, x, k=3) == (0.0, 0.0)
