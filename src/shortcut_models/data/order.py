"""The order in which a finite data set is visited: a fresh seeded permutation every epoch.

Sample j of a run (j = step * batch_size + row) is item ``perm_e[j mod N]`` of epoch ``e = j // N``,
where ``perm_e = torch.randperm(N, generator=seeding.generator(seed, STREAMS["data"], e))``. The order
depends only on (N, seed), so the batch of any step can be rebuilt without saved state.
"""

from __future__ import annotations

import torch

from .. import seeding


def epoch_indices(num_items: int, step: int, batch_size: int, seed: int) -> torch.Tensor:
    """Item numbers (int64 ``[batch_size]``) of the batch of ``step`` over ``num_items`` items."""
    if num_items < 1:
        raise ValueError("a data set to visit needs at least one item")
    j = torch.arange(step * batch_size, (step + 1) * batch_size)
    epochs = j // num_items
    out = torch.empty_like(j)
    for e in epochs.unique().tolist():
        perm = torch.randperm(num_items, generator=seeding.generator(seed, seeding.STREAMS["data"], e))
        sel = epochs == e
        out[sel] = perm[j[sel] % num_items]
    return out
