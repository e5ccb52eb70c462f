"""Which checkpoint a run continues, and whether it is the same run.

Rank 0 locks the run directory (:mod:`shortcut_models.runlock`), tidies what crashed writers left
and reads the newest intact checkpoint (:func:`read_checkpoint`: its config.json once, then its weights
and training state, loaded into the run once it is built); a damaged newer one is renamed
``damaged-step_N`` (kept, with a warning), while a checkpoint of another format (another release's)
stops the run as it is (``checkpoints.OtherFormat``). The other processes then read the checkpoint of
the step rank 0 chose. A checkpoint resumes only a run with the same settings (:func:`as_resumed`, also
the study's check of a cached run): keys marked ``resumable`` (``steps``, ``device``, ``logger``...) may
differ, any other difference is refused naming the first differing key. Objective knobs are compared as
the checkpoint records them (every knob, defaults included), so a knob whose default changed since the
run was saved is refused too, naming both values.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import checkpoints as ckpt
from .. import distributed, outputs, runlock
from ..config import RESUMABLE_KEYS, TrainConfig
from ..errors import UserError
from ..objectives import Objective, build_objective
from ..optim import LR_SCHEDULES
from .networks import recorded_step_input, with_step_input
from .state import SavedState, read_state


@dataclass(frozen=True)
class Resume:
    """The checkpoint a run continues, read and checked, not yet loaded into any network."""

    cfg: TrainConfig  # the run's config as it trains on (the step input the checkpoint recorded)
    saved: SavedState  # its weights and training state
    note: str | None  # how a new ``steps`` changes the learning rate of the steps still to come


Read = Callable[[Path], Resume]  # reads one checkpoint; raises DamagedCheckpoint or UserError


def comparable(cfg: TrainConfig, knobs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings that fix what a run computes, with every objective knob spelled out (``knobs``, or
    those ``cfg`` resolves to), for the check that a resumed run continues the run in its directory."""
    values = {k: v for k, v in cfg.to_dict().items() if k not in RESUMABLE_KEYS and k != "objective_args"}
    knobs = cfg.resolved_objective_args() if knobs is None else knobs
    values.update({f"objective_args.{k}": v for k, v in knobs.items()})
    return values


def initial_weights(cfg: TrainConfig, objective: Objective) -> str:
    """Where a fresh run's weights come from: ``init_from``, else the teacher run of an objective that
    distils one (the authors' recipe), else nowhere ("")."""
    return cfg.init_from or (objective.teacher if objective.teacher_run else "")


def as_trained(cfg: TrainConfig, objective: Objective, recorded: str | None) -> TrainConfig:
    """``cfg`` as a run with ``objective`` trains it: ``init_from`` spelled out (:func:`initial_weights`),
    and the network's step input, ``recorded`` being what the resumed checkpoint or the ``init_from``
    source trained with (:func:`.networks.with_step_input`)."""
    start = initial_weights(cfg, objective)
    if start != cfg.init_from:
        cfg = dataclasses.replace(cfg, init_from=start)
    return with_step_input(cfg, objective, recorded)


def as_resumed(
    cfg: TrainConfig, objective: Objective, path: Path, config: dict[str, Any], sources: bool = True
) -> tuple[TrainConfig, TrainConfig]:
    """``cfg`` as it trains on from checkpoint ``path`` (``config``: its config.json, already read) and
    the training config saved there. DamagedCheckpoint when ``config`` holds no valid training config,
    UserError when it holds another run (a key that may not change on resume, or an objective knob it
    records, differs). With ``sources`` False, where the teacher run and the initial weights lie is taken
    from the checkpoint rather than compared (a study directory may be moved)."""
    try:
        saved = TrainConfig.from_dict(ckpt.training_config(config))
        knobs = build_objective(saved.objective, 0, dict(config["objective_args"])).args()
    except (UserError, ValueError, TypeError, KeyError) as exc:
        raise ckpt.DamagedCheckpoint(f"{path / ckpt.CONFIG} holds no valid training config ({exc})") from None
    if not sources:
        args = dict(cfg.objective_args)
        if "teacher" in args:
            args["teacher"] = saved.objective_args.get("teacher", args["teacher"])
        cfg = dataclasses.replace(cfg, objective_args=args, init_from=saved.init_from)
    cfg = as_trained(cfg, objective, recorded_step_input(ckpt.training_config(config)))
    there, mine = comparable(saved, knobs), comparable(cfg)
    diff = [k for k in mine if there.get(k) != mine[k]]
    if diff:
        k = diff[0]
        raise UserError(
            f"{path.parent.parent} holds a run with a different config ({k}: {there.get(k)!r} there, {mine[k]!r} "
            "now); use another --out or the same settings"
        )
    return cfg, saved


def read_checkpoint(path: Path, cfg: TrainConfig, objective: Objective) -> Resume:
    """Checkpoint ``path`` read for a run of ``cfg`` to continue (its config.json read once): see
    :func:`as_resumed` and :func:`.state.read_state` for what is refused."""
    trained, saved = as_resumed(cfg, objective, path, ckpt.read_config(path))
    state = read_state(path, teacher=objective.teacher_run)
    return Resume(trained, state, schedule_note(saved, trained, state.step))


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


def newest_intact(run_dir: Path, read: Read) -> Resume | None:
    """The newest checkpoint of ``run_dir`` that is intact, read (None: a fresh run).

    Damaged newer checkpoints are renamed ``damaged-step_N`` (kept, never deleted) with one warning
    each; when none is intact, UserError rather than start over from step 0.
    """
    damaged: list[tuple[Path, str]] = []
    for path in reversed(ckpt.list_checkpoints(run_dir)):
        try:
            resume = read(path)
        except ckpt.DamagedCheckpoint as exc:
            damaged.append((path, str(exc)))
            continue
        for bad, problem in damaged:
            kept = ckpt.set_aside(bad)
            print(f"warning: resuming from {path.name}: {problem}; that checkpoint is kept as {kept}", file=sys.stderr)
        return resume
    if damaged:
        path, problem = damaged[0]
        raise UserError(
            f"no intact checkpoint to resume in {run_dir}: {problem}; move the damaged checkpoint(s) "
            "away to start the run over"
        )
    return None


def open_run(run_dir: Path, is_main: bool, read: Read) -> tuple[runlock.RunLock | None, Resume | None]:
    """Take ``run_dir`` and read its newest intact checkpoint on every process (None: a fresh run).

    Returns rank 0's lock on the directory (None on the other processes), which the caller releases,
    and the checkpoint. An error on any process raises on every process, and the lock is released.
    Every process makes the same collective calls, in the same order.
    """
    lock: runlock.RunLock | None = None
    try:
        error: UserError | None = None
        resume = None
        if is_main:
            try:
                lock = runlock.acquire(run_dir)
                for note in ckpt.recover_partial(run_dir):
                    print(f"note: {note}", file=sys.stderr)
                outputs.tidy(run_dir)  # temporary files of sample sheets or plots cut short by a kill
                resume = newest_intact(run_dir, read)
            except UserError as exc:
                error = exc
        if distributed.any_true(error is not None):
            raise error or UserError(f"the first process could not open {run_dir}")
        step = distributed.max_int(resume.saved.step if resume is not None else -1)  # rank 0's choice
        if not is_main:
            resume, error = _follow(run_dir, step, read)
        if distributed.any_true(error is not None):
            raise error or UserError(f"another process could not read its checkpoint from {run_dir}")
        return lock, resume
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _follow(run_dir: Path, step: int, read: Read) -> tuple[Resume | None, UserError | None]:
    """A process other than rank 0 reads the checkpoint of ``step`` (-1: none), as rank 0 did; returns
    it, or the error to raise on every process."""
    latest = ckpt.latest_checkpoint(run_dir)
    try:
        if (ckpt.step_of(latest) if latest is not None else -1) != step:
            raise UserError(f"the first process resumes {run_dir} at step {step}, this one sees {latest}")
        return (read(ckpt.checkpoint_dir(run_dir, step)) if step >= 0 else None), None
    except UserError as exc:
        return None, UserError(
            f"{exc}; the processes must see the same run directory, on a file system every node shares"
        )
