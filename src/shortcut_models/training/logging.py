"""Training logs: a CSV file (one row per logging interval) and, when installed, TensorBoard.

Only rank 0 writes them; :class:`IntervalMeans` averages the values of every process first.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

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


class MetricsLogger:
    """Appends rows to ``RUN/metrics.csv`` (the header is written once; resumed runs append)."""

    def __init__(self, run_dir: Path, tensorboard: bool = False) -> None:
        self.path = Path(run_dir) / "metrics.csv"
        self._fields: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, newline="") as fh:
                self._fields = next(csv.reader(fh), None)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:
                self._tb = None

    def log(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **values}
        if self._fields is None:
            self._fields = list(row)
            with open(self.path, "w", newline="") as fh:
                csv.writer(fh).writerow(self._fields)
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow([_fmt(row.get(k, "")) for k in self._fields])
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _fmt(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
