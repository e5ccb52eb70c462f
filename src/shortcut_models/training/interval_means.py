"""Means of the training logs over a logging interval and over every process (rank 0 then writes
them with :class:`shortcut_models.loggers.RunLogger`)."""

from __future__ import annotations

from collections.abc import Callable

import torch


class IntervalMeans:
    """Weighted means of per-step log tensors over a logging interval, over every process.

    Each step adds its values with a weight (the number of rows a mean was taken over: all rows for
    the loss, the flow or self-consistency rows for its parts; 1 for anything else). ``means``
    sums values and weights over processes with ``reduce`` (one collective) and divides, so a part
    is the mean over all of its rows in the interval, whichever process held them. A part with no
    rows on a process (NaN there) contributes nothing. Adding costs no host sync.
    """

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._weights: dict[str, float] = {}
        self.steps = 0

    def add(self, logs: dict[str, torch.Tensor], weights: dict[str, float]) -> None:
        for key, value in logs.items():
            w = float(weights.get(key, 1.0))
            term = torch.nan_to_num(value.detach().float()) * w if w else torch.zeros_like(value.detach().float())
            self._sums[key] = self._sums[key] + term if key in self._sums else term
            self._weights[key] = self._weights.get(key, 0.0) + w
        self.steps += 1

    def means(self, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> dict[str, float]:
        """Means per key (keys in the order first added); resets the interval."""
        keys = list(self._sums)
        if not keys:
            return {}
        sums = torch.stack([self._sums[k] for k in keys])
        weights = torch.tensor([self._weights[k] for k in keys], dtype=sums.dtype, device=sums.device)
        total = reduce(torch.cat([sums, weights]))
        values = (total[: len(keys)] / total[len(keys) :]).tolist()
        self.__init__()
        return dict(zip(keys, values))
