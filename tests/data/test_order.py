"""The epoch-permutation order shared by in-memory data and latent caches, pinned to fixed values."""

import pytest
import torch

from shortcut_models.data import TensorSource
from shortcut_models.data.order import epoch_indices


def test_epoch_indices_are_pinned():
    # Values of the rule as it was before it moved to data/order.py: a change breaks every resumed run.
    assert epoch_indices(10, 3, 7, seed=5).tolist() == [0, 5, 7, 1, 6, 3, 9]
    assert epoch_indices(10, 1, 16, seed=0).tolist() == [4, 9, 6, 8, 4, 8, 0, 5, 2, 7, 3, 6, 9, 1, 6, 4]


def test_every_epoch_is_a_permutation_and_tensor_source_uses_it():
    idx = epoch_indices(7, 0, 7 * 5, seed=3).view(5, 7)
    assert all(sorted(row.tolist()) == list(range(7)) for row in idx)
    assert len({tuple(row.tolist()) for row in idx}) > 1  # a fresh permutation each epoch
    src = TensorSource("t", torch.arange(7.0)[:, None], torch.arange(7), 7)
    for step in range(4):
        assert torch.equal(src.indices(step, 5, 3), epoch_indices(7, step, 5, 3))
        _, y = src.batch_rows(step, 5, 3, torch.tensor([1, 4]))
        assert torch.equal(y, epoch_indices(7, step, 5, 3)[[1, 4]])
    with pytest.raises(ValueError):
        epoch_indices(0, 0, 4, seed=0)
