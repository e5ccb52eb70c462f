"""Reproducible random streams derived from (seed, step, stream) so that any step can be replayed.

Training draws the data batch and the objective's noise, times and levels from generators made
here, keyed by the step number: a resumed run reproduces exactly the batches of an uninterrupted one
without saving generator state.
"""

from __future__ import annotations

import numpy as np
import torch

STREAMS = {"data": 0, "targets": 1, "sample": 2, "eval": 3, "reference": 4}


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed mixed from ``seed`` and integer keys (numpy's SeedSequence hashing)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def generator(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on ``device`` seeded from (seed, *keys)."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))
