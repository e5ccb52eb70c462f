"""Means of the training logs over a logging interval and over every process (rank 0 then writes
them with :class:`shortcut_models.loggers.RunLogger`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class IntervalMeans:
    """Weighted means of per-step log tensors over a logging interval, over every process.

    Each step adds its values with a weight (the number of rows a mean was taken over: all rows for
    the loss, the flow or self-consistency rows for its parts; 1 for anything else). ``means``
    sums values and weights over processes with ``reduce`` (one collective) and divides, so a part
    is the mean over all of its rows in the interval, whichever process held them. A part with no
    rows on a process (NaN there) contributes nothing. Adding costs no host sync.

    A checkpoint keeps the open interval (:meth:`state`, :meth:`load_state`), so that the first row a
    resumed run logs covers the same steps, with the same sums, as the uninterrupted run's. ``steps``
    counts the steps added by this process since the interval opened or was resumed (the throughput
    of the row is timed over those).
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

    def state(self, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> dict[str, Any]:
        """The open interval's sums and weights over every process (``reduce``: one collective, on every
        process, as in :meth:`means`), on the CPU, for a checkpoint; the interval goes on unchanged."""
        keys = list(self._sums)
        if not keys:
            return {"keys": [], "sums": torch.zeros(0), "weights": []}
        sums = torch.stack([self._sums[k] for k in keys])
        weights = torch.tensor([self._weights[k] for k in keys], dtype=sums.dtype, device=sums.device)
        total = reduce(torch.cat([sums, weights])).cpu()
        return {"keys": keys, "sums": total[: len(keys)].clone(), "weights": total[len(keys) :].tolist()}

    def load_state(self, state: dict[str, Any] | None, device: torch.device, values: bool = True) -> None:
        """Open the interval with a checkpoint's :meth:`state` (None: an empty one, as a checkpoint written
        without it gives). ``values=False`` takes its keys with zero sums and weights: the processes but
        one, so that every process holds the same keys (each :meth:`state` is then one collective on all)
        and the sums over processes are the saved ones. ValueError when ``state`` is malformed."""
        self.__init__()
        if state is None:
            return
        keys, sums, weights = state["keys"], state["sums"], state["weights"]
        if not (isinstance(sums, torch.Tensor) and sums.ndim == 1 and len(keys) == len(sums) == len(weights)):
            raise ValueError("the logging interval's state is malformed")
        for i, key in enumerate(keys):
            self._sums[str(key)] = (sums[i] if values else torch.zeros_like(sums[i])).to(device)
            self._weights[str(key)] = float(weights[i]) if values else 0.0

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
