"""Fixtures of the objective tests: seeded batches of data and noise."""

import pytest
import torch


def random_batch(b=64, shape=(3,), seed=0):
    """Data and noise of ``b`` rows of ``shape``, and a generator for the objective's draws (all seeded)."""
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, *shape, generator=g),
        torch.randn(b, *shape, generator=g),
        torch.Generator().manual_seed(seed + 1),
    )


@pytest.fixture(scope="session")
def make_batch():
    """``make_batch(b=64, shape=(3,), seed=0)`` -> ``(x1, x0, generator)``: see :func:`random_batch`."""
    return random_batch
