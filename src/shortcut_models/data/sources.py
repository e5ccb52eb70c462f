"""Training data as deterministic functions of the step: batch(step) is the same on every replay.

A source knows its sample ``shape`` and its number of classes (0 = unlabelled) and yields
``(x1, y)`` batches: x1 float32 data (t = 1 end of the path), y int64 labels.

Because the batch of step s is a function of s, a resumed run continues with exactly the samples it
had not seen yet (an "infinite sampler" with nothing to save), and several processes can each take
their own rows of the same global batch (:func:`take_rows`).
"""

from __future__ import annotations

from typing import Protocol

import torch

from .. import seeding
from ..seeding import RowShare
from .info import SourceInfo
from .order import epoch_indices
from .toy2d import TOYS, toy_samples


class DataSource(Protocol):
    name: str
    shape: tuple[int, ...]
    num_classes: int

    @property
    def info(self) -> SourceInfo:
        """Shapes and classes (the same as ``describe_source(name)``)."""
        ...

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch of ``step`` (pure function of its arguments)."""
        ...

    def reference(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` held-out data points for evaluation (fresh draws for toys)."""
        ...


class ToySource:
    """Fresh points of a 2-D toy at every step (infinite data)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.shape = (2,)
        self.num_classes = TOYS[name].num_classes

    @property
    def info(self) -> SourceInfo:
        return SourceInfo.plain(self.name, self.shape, self.num_classes)

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return toy_samples(self.name, batch_size, seeding.derive_seed(seed, seeding.STREAMS["data"], step))

    def reference(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return toy_samples(self.name, n, seeding.derive_seed(seed, seeding.STREAMS["reference"]))


class TensorSource:
    """A finite dataset held in memory, visited in a fresh permutation every epoch.

    Items are visited in the epoch permutations of :func:`order.epoch_indices`: the order depends
    only on the seed and the number of items.
    """

    def __init__(
        self, name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int, heldout: tuple | None = None
    ) -> None:
        self.name = name
        self.x, self.y = x, y
        self.shape = tuple(x.shape[1:])
        self.num_classes = num_classes
        self.heldout = heldout

    @property
    def info(self) -> SourceInfo:
        return SourceInfo.plain(self.name, self.shape, self.num_classes)

    def indices(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """Items of the batch of ``step``."""
        return epoch_indices(self.x.shape[0], step, batch_size, seed)

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.indices(step, batch_size, seed)
        return self.x[idx], self.y[idx]

    def batch_rows(
        self, step: int, batch_size: int, seed: int, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``rows`` of the global batch of ``step`` (only those items are gathered)."""
        idx = self.indices(step, batch_size, seed)[rows]
        return self.x[idx], self.y[idx]

    def reference(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.heldout if self.heldout is not None else (self.x, self.y)
        return x[:n], y[:n]


def take_rows(
    source: DataSource, step: int, batch_size: int, seed: int, share: RowShare
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of ``share`` of the global batch of ``step`` (of ``batch_size`` rows).

    The whole share is ``source.batch``; a part uses the source's ``batch_rows`` when it has one
    (finite data: gather or read only those items), else the global batch is built and sliced (cheap
    for generated toys).
    """
    if share.is_whole:
        return source.batch(step, batch_size, seed)
    take = getattr(source, "batch_rows", None)
    if take is not None:
        return take(step, batch_size, seed, share.index)
    x, y = source.batch(step, batch_size, seed)
    return x[share.index], y[share.index]
