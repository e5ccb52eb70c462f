"""Resolve a run before anything is built: the config as it trains, the checkpoint it continues, the
teacher run and the initial weights it starts from.

:func:`resolve_run` reads and checks every file a run starts from, each once, before a network is
built: the newest intact checkpoint of the run directory (a resumed run: its config.json once, its
weights and training state; see :mod:`.resume`), else the teacher run's checkpoint (distillation,
:mod:`.teacher`) and the ``init_from`` source (:mod:`.init_from`). The config as the run trains spells
out what the run takes from them (the step input, a student's ``init_from``). The trainer then builds
every part once from the :class:`ResolvedRun` and loads the weights it names.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from .. import distributed, runlock
from ..config import TrainConfig, validate
from ..data import DataSource, build_source
from ..errors import UserError
from ..objectives import Objective, build_objective
from .batches import BatchPlan, plan_batches
from .init_from import SourceCheckpoint, check_compatible, check_held_step, read_source
from .memory import check_data_fits
from .networks import recorded_step_input
from .resume import Resume, as_trained, initial_weights, open_run, read_checkpoint
from .teacher import read_teacher

T = TypeVar("T")


@dataclass(frozen=True)
class ResolvedRun:
    """A training run as it will train, with everything it starts from read and checked; nothing built."""

    cfg: TrainConfig  # as it trains: step input spelled out, a student's init_from, a resumed run's own
    run_dir: Path
    objective: Objective
    source: DataSource
    num_classes: int  # of the network (classes plus the null label when class-conditional)
    plan: BatchPlan  # this process's rows of each step and its micro-batches
    device: torch.device
    world: int  # processes
    is_main: bool  # rank 0: it logs, samples and writes checkpoints
    lock: runlock.RunLock | None  # rank 0's lock on run_dir, held until the run ends; the holder releases it
    resume: Resume | None  # the checkpoint the run continues; None: a fresh run
    teacher: SourceCheckpoint | None  # a fresh distillation run's teacher run (its EMA weights)
    init: SourceCheckpoint | None  # a fresh run's initial weights (init_from)


def resolve_run(cfg: TrainConfig, run_dir: Path) -> ResolvedRun:
    """Resolve the run of ``cfg`` in ``run_dir``: check the config, plan the batches, refuse a step whose
    data cannot fit, take the run directory (rank 0) and read the checkpoint it continues or, for a fresh
    run, the teacher run and initial weights it starts from. UserError on every process when any refuses."""
    validate(cfg)  # a config built in Python gets the checks of the command line
    world, rank = distributed.world_size(), distributed.rank()
    plan = plan_batches(cfg, rank, world)
    device = distributed.resolve_device(cfg.device)
    source = build_source(cfg.data)
    num_classes = cfg.network_classes(source.num_classes)
    objective = build_objective(cfg.objective, num_classes, cfg.objective_args)
    try:  # e.g. IMM's groups of particles must not be cut by the processes or the micro-batches
        objective.check_micro_batch(plan.rows_per_rank // plan.grad_accum)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    check_data_fits(source.shape, plan.rows_per_rank, device)  # before anything is read
    lock, resume = open_run(run_dir, rank == 0, lambda path: read_checkpoint(path, cfg, objective))
    try:
        teacher = init = None
        if resume is not None:
            cfg = resume.cfg
            if resume.note is not None and rank == 0:
                print(f"note: {resume.note}", file=sys.stderr)
        else:
            cfg, teacher, init = on_every_process(lambda: _fresh_sources(cfg, objective))
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return ResolvedRun(
        cfg, run_dir, objective, source, num_classes, plan, device, world, rank == 0, lock, resume, teacher, init
    )


def _fresh_sources(
    cfg: TrainConfig, objective: Objective
) -> tuple[TrainConfig, SourceCheckpoint | None, SourceCheckpoint | None]:
    """A fresh run's config as it trains, its teacher run (distillation) and the source of its initial
    weights, each read once; the run takes the step input of that source."""
    teacher = read_teacher(cfg, objective.teacher) if objective.teacher_run else None
    start, init = initial_weights(cfg, objective), None
    if start:
        init = teacher if teacher is not None and start == objective.teacher else read_source(start, "init_from")
    cfg = as_trained(cfg, objective, recorded_step_input(init.training) if init is not None else None)
    for read in (teacher, init if init is not teacher else None):
        if read is not None:  # the same data and network
            check_compatible(read.training, cfg, read.path)
    if init is not None:  # a network holding its step-size input holds the source's
        check_held_step(init, objective)
    return cfg, teacher, init


def on_every_process(action: Callable[[], T]) -> T:
    """``action()`` on every process; when it raises UserError on any process, every process raises."""
    error: UserError | None = None
    try:
        result = action()
    except UserError as exc:
        error = exc
    if distributed.any_true(error is not None):
        raise error or UserError("another process could not read or load what this run starts from")
    return result
