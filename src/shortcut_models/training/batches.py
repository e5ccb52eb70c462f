"""How one process takes its part of each step's batch.

``batch_size`` is the global batch. Process k of W holds global rows k, k + W, ... (a
:class:`~shortcut_models.seeding.RowShare`), ``batch_size / W`` rows, and runs them as ``grad_accum``
micro-batches (set directly, or derived from ``batch_per_gpu``; see
:func:`shortcut_models.distributed.split_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import distributed
from ..config import TrainConfig
from ..seeding import RowShare


@dataclass(frozen=True)
class BatchPlan:
    """This process's rows of every step and how many micro-batches they are run in."""

    rows_per_rank: int
    grad_accum: int
    share: RowShare


def plan_batches(cfg: TrainConfig, rank: int, world: int) -> BatchPlan:
    """The batch plan of process ``rank`` of ``world``; UserError when the batch does not split evenly."""
    rows, accum = distributed.split_batch(cfg.batch_size, world, cfg.grad_accum, cfg.batch_per_gpu)
    return BatchPlan(rows, accum, RowShare.interleaved(cfg.batch_size, rank, world))
