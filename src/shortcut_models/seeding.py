"""Reproducible random streams derived from (seed, step, stream) so that any step can be replayed.

Training draws the data batch and the objective's noise, times and levels from generators made
here, keyed by the step number: a resumed run reproduces exactly the batches of an uninterrupted one
without saving generator state.

Several processes (see ``distributed.py``) share one global batch: :class:`RowShare` names
the global rows a process holds. Row r of step s gets the same data item, noise, time and level
whichever process computes it, so a run does not depend on the number of processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .runtime import to_device

STREAMS = {"data": 0, "targets": 1, "sample": 2, "eval": 3, "reference": 4, "renoise": 5}


MAX_SEED = 2**32 - 1  # seeds are 32-bit: derive_seed mixes the low 32 bits, so larger ones would alias


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed mixed from ``seed`` (0..MAX_SEED) and integer keys (numpy's SeedSequence hashing)."""
    state = np.random.SeedSequence([int(seed) & MAX_SEED, *[int(k) for k in keys]]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def generator(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on ``device`` seeded from (seed, *keys)."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))


def sample_noise(seed: int, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The starting noise [1, *shape] (float32, on the CPU) of sample number ``index`` under ``seed``: what
    ``shortcut sample --seed`` and :meth:`~shortcut_models.inference.LoadedModel.generate` start sample
    ``index`` from, whatever the batch size (one generator per sample)."""
    return torch.randn(1, *shape, generator=generator(seed, STREAMS["sample"], index))


def renoise_noise(seed: int, index: int, step: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The fresh noise [1, *shape] (float32, on the CPU) that the re-noising sampler mixes into sample ``index``
    before its jump number ``step`` (1, 2, ...) under ``seed``; one generator per sample and step."""
    return torch.randn(1, *shape, generator=generator(seed, STREAMS["renoise"], index, step))


@dataclass(frozen=True, eq=False)
class RowShare:
    """The rows of a global batch of ``total`` rows that one process holds.

    ``index`` (int64, on the CPU, strictly increasing) lists their global row numbers; local row i
    is global row ``index[i]``. A single process holds :meth:`whole`; process k of W holds
    :meth:`interleaved` rows k, k + W, k + 2W, ..., so any leading block of global rows (the
    self-consistency rows) is spread evenly over the processes.
    """

    total: int
    index: torch.Tensor

    def __post_init__(self) -> None:
        idx = self.index
        if idx.ndim != 1 or idx.dtype != torch.int64 or idx.device.type != "cpu":
            raise ValueError("RowShare.index must be a 1-D int64 CPU tensor")
        if idx.numel() and (idx[0] < 0 or idx[-1] >= self.total or (idx[1:] <= idx[:-1]).any()):
            raise ValueError(f"RowShare.index must be strictly increasing rows of 0..{self.total - 1}")

    @classmethod
    def whole(cls, total: int) -> RowShare:
        return cls(int(total), torch.arange(int(total)))

    @classmethod
    def interleaved(cls, total: int, rank: int, world: int) -> RowShare:
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of {world} processes")
        return cls(int(total), torch.arange(rank, int(total), world))

    def __len__(self) -> int:
        return int(self.index.numel())

    @property
    def is_whole(self) -> bool:
        return len(self) == self.total

    def count_below(self, row: int) -> int:
        """How many of this share's rows come before global row ``row`` (they are its first rows)."""
        return int((self.index < row).sum())


# Noise of a global batch with at most this many elements is drawn whole on every process (one call,
# microseconds); larger batches draw only their own rows, each from a generator of its own.
GLOBAL_NOISE_LIMIT = 1 << 24


def noise_rows(
    share: RowShare,
    row_shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise [len(share), *row_shape] for the rows of ``share``.

    Global row r gets the same noise whatever the share. Up to ``GLOBAL_NOISE_LIMIT`` elements in the
    global batch, the whole batch is drawn from ``generator`` (for the whole share this is exactly
    one ``randn`` call) and the share's rows are taken; above it, row r comes from its own generator
    seeded by (``generator.initial_seed()``, r), so each process draws only its rows and
    ``generator`` is not advanced. Either way the choice depends only on the global batch.
    """
    gen_device = generator.device if generator is not None else device
    numel = share.total * int(np.prod(row_shape, dtype=np.int64))
    if generator is None or numel <= GLOBAL_NOISE_LIMIT:
        out = torch.randn((share.total, *row_shape), generator=generator, device=gen_device, dtype=torch.float32)
        if not share.is_whole:
            out = out[to_device(share.index, gen_device)]
    else:
        base = generator.initial_seed()
        rows = [
            torch.randn(
                row_shape, generator=torch.Generator(gen_device).manual_seed(derive_seed(base, r)), device=gen_device
            )
            for r in share.index.tolist()
        ]
        out = torch.stack(rows) if rows else torch.empty((0, *row_shape), device=gen_device)
    return out.to(device, dtype)


def uniform_rows(
    share: RowShare,
    generator: torch.Generator | None,
    device: torch.device,
    kind: str = "rand",
    high: int = 0,
) -> torch.Tensor:
    """One uniform draw per global row, taken for ``share``'s rows: floats in [0, 1) (kind 'rand') or
    integers in [0, high) (kind 'int'). The whole global batch's draws are made (``total`` scalars,
    cheap), so every process advances ``generator`` alike."""
    gen_device = generator.device if generator is not None else device
    if kind == "rand":
        out = torch.rand((share.total,), generator=generator, device=gen_device)
    else:
        out = torch.randint(0, high, (share.total,), generator=generator, device=gen_device)
    if not share.is_whole:
        out = out[to_device(share.index, gen_device)]
    return out.to(device)


@dataclass(frozen=True, eq=False)
class RowDraws:
    """The random draws of the rows one process holds, made per global row of the batch.

    Objectives draw their noise, times and label dropouts through this object, so their maths never
    deals with processes: each draw is made for the whole global batch (noise of a large batch per
    row) and the local rows are taken. Row r gets the same values whichever process holds it;
    :meth:`blocks` splits the draws by blocks of rows (an objective's kinds of rows), and
    :meth:`from_whole` deals out a choice made about the whole batch.
    """

    share: RowShare
    generator: torch.Generator | None
    device: torch.device

    @classmethod
    def for_batch(
        cls, batch: int, generator: torch.Generator | None, device: torch.device, rows: RowShare | None = None
    ) -> RowDraws:
        """Draws for a local batch of ``batch`` rows: global rows ``rows`` (default: the whole batch)."""
        share = RowShare.whole(batch) if rows is None else rows
        if len(share) != batch:
            raise ValueError(f"rows names {len(share)} rows but the batch holds {batch}")
        return cls(share, generator, torch.device(device))

    def __len__(self) -> int:
        return len(self.share)

    @property
    def total(self) -> int:
        """Rows of the global batch."""
        return self.share.total

    def normal(self, row_shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal noise ``[len(self), *row_shape]`` (see :func:`noise_rows`)."""
        return noise_rows(self.share, row_shape, self.generator, self.device, dtype)

    def uniform(self) -> torch.Tensor:
        """One float in [0, 1) per local row."""
        return uniform_rows(self.share, self.generator, self.device, "rand")

    def integers(self, high: int) -> torch.Tensor:
        """One integer in [0, high) per local row."""
        return uniform_rows(self.share, self.generator, self.device, "int", high)

    def blocks(self, counts: Sequence[int]) -> tuple[RowDraws, ...]:
        """The draws of consecutive blocks of the batch's rows, ``counts`` rows each (in all, the batch), in
        order: block i stands for ``counts[i]`` rows (draws continue in order: same generator). The rows held
        here of each block are consecutive local rows, block i's after those of the blocks before it."""
        if sum(counts) != self.total:
            raise ValueError(f"blocks of {list(counts)} rows do not make a batch of {self.total} rows")
        out, start = [], 0
        for n in counts:
            held = self.share.index[(self.share.index >= start) & (self.share.index < start + n)]
            out.append(RowDraws(RowShare(n, held - start), self.generator, self.device))
            start += n
        return tuple(out)

    def from_whole(self, values: Callable[[RowDraws], torch.Tensor]) -> torch.Tensor:
        """The rows held here of ``values(whole)``, one value per row of the whole batch computed from
        ``whole``, the draws of every row (the same on every process, advancing the same generator): a choice
        about the batch as a whole, e.g. a deterministic assignment of its rows or a count over all its rows."""
        whole = RowDraws(RowShare.whole(self.total), self.generator, self.device)
        out = values(whole)
        if self.share.is_whole:
            return out
        return out[self.share.index.to(out.device)]
