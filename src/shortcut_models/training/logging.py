"""Training logs: a CSV file (one row per logging interval) and, when installed, TensorBoard."""

from __future__ import annotations

import csv
from pathlib import Path


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
