"""Which checkpoint a run continues from, and whether it is the same run.

Rank 0 locks the run directory (:mod:`shortcut_models.runlock`), tidies what crashed writers left
and loads the newest intact checkpoint; a damaged newer one is renamed ``damaged-step_N`` (kept, with
a warning), while a checkpoint of another format (another release's) stops the run as it is
(``checkpoints.OtherFormat``). The other processes then load the checkpoint of the step rank 0 chose.
A checkpoint resumes only a run with the same settings: keys marked ``resumable`` (``steps``,
``device``, ``logger``...) may differ, any other difference is refused naming the first differing key.
Objective knobs are compared as the checkpoint records them (every knob, defaults included), so a knob
whose default changed since the run was saved is refused too, naming both values.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import checkpoints as ckpt
from .. import distributed, outputs, runlock
from ..config import RESUMABLE_KEYS, TrainConfig
from ..data import build_source
from ..errors import UserError
from ..objectives import Objective, build_objective
from ..optim import LR_SCHEDULES
from .networks import resolve_step_input

Load = Callable[[Path], int]  # loads one checkpoint, returns its step; raises DamagedCheckpoint or UserError


def comparable(cfg: TrainConfig, knobs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings that fix what a run computes, with every objective knob spelled out (``knobs``, or
    those ``cfg`` resolves to), for the check that a resumed run continues the run in its directory."""
    values = {k: v for k, v in cfg.to_dict().items() if k not in RESUMABLE_KEYS and k != "objective_args"}
    knobs = cfg.resolved_objective_args() if knobs is None else knobs
    values.update({f"objective_args.{k}": v for k, v in knobs.items()})
    return values


def saved_config(path: Path, cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """The training config of checkpoint ``path``; DamagedCheckpoint when it is unreadable, OtherFormat
    when another release wrote it, UserError when it is another run's (a key that may not change on
    resume, or an objective knob its config.json records, differs from ``cfg``)."""
    config = ckpt.read_config(path)
    try:
        saved_cfg = TrainConfig.from_dict(ckpt.training_config(config))
        knobs = build_objective(saved_cfg.objective, 0, dict(config["objective_args"])).args()
        saved = comparable(saved_cfg, knobs)
    except (UserError, ValueError, TypeError, KeyError) as exc:
        raise ckpt.DamagedCheckpoint(f"{path / ckpt.CONFIG} holds no valid training config ({exc})") from None
    mine = comparable(cfg)
    diff = [k for k in mine if saved.get(k) != mine[k]]
    if diff:
        k = diff[0]
        raise UserError(
            f"{run_dir} holds a run with a different config ({k}: {saved.get(k)!r} there, {mine[k]!r} now); "
            "use another --out or the same settings"
        )
    return saved_cfg


def as_trained(cfg: TrainConfig, objective: Objective, run_dir: Path) -> TrainConfig:
    """``cfg`` as a trainer of ``run_dir`` runs it with ``objective``: an objective that distils a teacher
    run starts from that run (``init_from``), and the network's step input is spelled out
    (:func:`.networks.resolve_step_input`)."""
    if objective.teacher_run and not cfg.init_from:
        cfg = dataclasses.replace(cfg, init_from=objective.teacher)
    return resolve_step_input(cfg, objective, run_dir)


def refuse_another_run(cfg: TrainConfig, run_dir: Path) -> None:
    """UserError naming the first differing setting when the newest checkpoint of ``run_dir`` holds a run
    with other settings than ``cfg`` (what a trainer resuming it refuses), without loading any weights;
    nothing when the directory holds no checkpoint or an unreadable one (a trainer reports that)."""
    path = ckpt.latest_checkpoint(run_dir)
    if path is None:
        return
    objective = build_objective(
        cfg.objective, cfg.network_classes(build_source(cfg.data).num_classes), cfg.objective_args
    )
    try:
        saved_config(path, as_trained(cfg, objective, run_dir), run_dir)
    except ckpt.DamagedCheckpoint:
        return


def schedule_note(saved: TrainConfig, cfg: TrainConfig, step: int) -> str | None:
    """A note when a resumed run's new ``steps`` changes the learning rate of the steps still to come."""
    if saved.steps == cfg.steps or step >= cfg.steps:
        return None
    schedule = LR_SCHEDULES[cfg.lr_schedule]
    before, now = schedule(step, saved.steps, cfg), schedule(step, cfg.steps, cfg)
    if before == now:
        return None
    return (
        f"steps changed from {saved.steps} to {cfg.steps}: the {cfg.lr_schedule} learning-rate schedule is "
        f"recomputed for {cfg.steps} steps, the learning rate at step {step} goes from {before:.3g} to {now:.3g}"
    )


def newest_intact(run_dir: Path, load: Load) -> int:
    """Load the newest checkpoint of ``run_dir`` that is intact; returns its step (-1: none, a fresh run).

    Damaged newer checkpoints are renamed ``damaged-step_N`` (kept, never deleted) with one warning
    each; when none is intact, UserError rather than start over from step 0.
    """
    damaged: list[tuple[Path, str]] = []
    for path in reversed(ckpt.list_checkpoints(run_dir)):
        try:
            step = load(path)
        except ckpt.DamagedCheckpoint as exc:
            damaged.append((path, str(exc)))
            continue
        for bad, problem in damaged:
            kept = ckpt.set_aside(bad)
            print(f"warning: resuming from {path.name}: {problem}; that checkpoint is kept as {kept}", file=sys.stderr)
        return step
    if damaged:
        path, problem = damaged[0]
        raise UserError(
            f"no intact checkpoint to resume in {run_dir}: {problem}; move the damaged checkpoint(s) "
            "away to start the run over"
        )
    return -1


def open_run(run_dir: Path, is_main: bool, load: Load) -> runlock.RunLock | None:
    """Take ``run_dir`` and load its newest intact checkpoint on every process (none: a fresh run).

    Returns rank 0's lock on the directory (None on the other processes); the caller releases it.
    An error on any process raises on every process, and the lock is released. Every process makes
    the same collective calls, in the same order.
    """
    lock: runlock.RunLock | None = None
    try:
        error: UserError | None = None
        step = -1
        if is_main:
            try:
                lock = runlock.acquire(run_dir)
                for note in ckpt.recover_partial(run_dir):
                    print(f"note: {note}", file=sys.stderr)
                outputs.tidy(run_dir)  # temporary files of sample sheets or plots cut short by a kill
                step = newest_intact(run_dir, load)
            except UserError as exc:
                error = exc
        if distributed.any_true(error is not None):
            raise error or UserError(f"the first process could not open {run_dir}")
        step = distributed.max_int(step)  # rank 0's choice (the others hold -1)
        error = None if is_main else _follow(run_dir, step, load)
        if distributed.any_true(error is not None):
            raise error or UserError(f"another process could not load its checkpoint from {run_dir}")
        return lock
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _follow(run_dir: Path, step: int, load: Load) -> UserError | None:
    """A process other than rank 0 loads the checkpoint of ``step`` (-1: none), as rank 0 did; returns
    the error to raise on every process, or None."""
    latest = ckpt.latest_checkpoint(run_dir)
    try:
        if (ckpt.step_of(latest) if latest is not None else -1) != step:
            raise UserError(f"the first process resumes {run_dir} at step {step}, this one sees {latest}")
        if step >= 0:
            load(ckpt.checkpoint_dir(run_dir, step))
    except UserError as exc:
        return UserError(f"{exc}; the processes must see the same run directory, on a file system every node shares")
    return None
