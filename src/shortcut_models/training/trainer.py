"""The training loop: data -> targets (from the online, EMA or teacher network) -> loss -> optimizer -> EMA.

Each step is a pure function of (state, step): the data batch and the objective's random draws
come from generators keyed by the step (see :mod:`shortcut_models.seeding`), so a run stopped and
resumed from its checkpoint computes exactly what an uninterrupted run computes. The learning rate of
a step is a pure function of the step and the config (:mod:`shortcut_models.optim`).
Checkpoints are written every ``ckpt_every`` steps, at the end, and on SIGINT/SIGTERM; a NaN or
infinite loss, gradient or weight stops the run before anything non-finite is saved.

:class:`Trainer` first resolves the run (``resolve.py``: the config as it trains, the checkpoint it
continues or none, the teacher run and initial weights it starts from, each file read once; rank 0 locks
the run directory from then to the end of :meth:`Trainer.run`, the newest intact checkpoint is chosen, a
damaged newer one renamed ``damaged-step_N`` with a warning), then builds every part once from it, each
by a named function in its own module: the batch split (``batches.py``), the networks (``networks.py``),
the optimizer (``shortcut_models.optim``), their DDP and compiled views (``wrapping.py``) and the
checkpointed state (``state.py``), into which it loads what the run starts from.

Under torchrun (see :mod:`shortcut_models.distributed` and docs/distributed.md) ``batch_size`` is the global batch:
process k of W computes global rows k, k + W, ... of each step (data, noise, times and levels of a
row do not depend on W), DistributedDataParallel averages the gradients, and rank 0 alone writes
logs, samples and checkpoints. A stop signal on any process stops every process at the same step.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm

from .. import checkpoints as ckpt
from .. import distributed, runlock, seeding
from ..autoencoders import Autoencoder
from ..config import TrainConfig
from ..data import take_rows
from ..errors import TrainingDiverged, WriteFailed
from ..inference import LoadedModel, load_autoencoder, write_sample_sheets
from ..loggers import RunLogger, parse_backends
from ..objectives import Progress, TargetNetworks, Targets, kind_counts, log_weights
from ..optim import build_optimizer, learning_rate
from ..runtime import autocast_dtype, to_device
from .init_from import InitSource, load_initial_weights
from .interval_means import IntervalMeans
from .memory import check_batch_fits
from .networks import build_networks, build_spec
from .resolve import ResolvedRun, on_every_process, resolve_run
from .resume import comparable
from .state import RunState
from .teacher import load_teacher
from .wrapping import wrap_for_training

# errno values of a write that cannot succeed: disk full, quota, file-size limit, read-only file system
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)

__all__ = ["Evaluator", "Trainer", "comparable"]


class Evaluator(Protocol):
    """Evaluation during training, called by :meth:`Trainer.run` (implemented by
    ``shortcut_models.evaluation.TrainingEvaluator``; :func:`shortcut_models.experiments.build_trainer`
    builds one from the config's eval_* keys). Every member below is called by the trainer."""

    def start(self, step: int, is_main: bool) -> None:
        """The run starts or resumes at ``step`` (results of later steps are dropped)."""

    def due(self, step: int) -> bool:
        """Whether the training step ``step``, just finished, is evaluated."""

    def __call__(self, model: LoadedModel, step: int, logger: RunLogger | None) -> object:
        """Evaluate ``model`` on every process; rank 0 (which holds ``logger``) records the results."""

    @property
    def count(self) -> int:
        """How many evaluations were made since :meth:`start` (0: the run ends without a summary)."""

    def summary(self, wall_seconds: float) -> str:
        """One line for the end of a run that made evaluations: what they cost of ``wall_seconds`` of training."""


def _start(run: ResolvedRun, state: RunState) -> tuple[int, InitSource | None]:
    """Load what ``run`` starts from into its built ``state``: the checkpoint it continues (weights,
    optimizer, EMA counters, random state, teacher), else the teacher run's EMA weights into the bound
    teacher and the initial weights (``init_from``); returns the step and where initial weights came from."""
    if run.resume is not None:
        return on_every_process(lambda: state.restore(run.resume.saved)), None
    if run.teacher is not None:
        on_every_process(lambda: load_teacher(state.teacher, run.teacher))
    if run.init is None:
        return 0, None
    init = load_initial_weights(state.model, state.ema.module, run.init)
    if run.is_main:
        print(init.describe(), file=sys.stderr)
    return 0, init


class Trainer:
    """Owns the model, EMA, optimizer and run directory of one training run.

    ``evaluator``: evaluation during training (see :class:`Evaluator`); None evaluates nothing.
    ``progress``: progress bars and progress lines on stderr (rank 0 only).
    The run is resolved first (:func:`.resolve.resolve_run`), then every part is built once from it.
    """

    last_checkpoint: Path | None  # the checkpoint the run resumed from or last wrote
    samples_dir: Path | None = None  # the sample sheets a completed run() wrote
    _autoencoder: Autoencoder | None = None  # the decoder of a latent run, loaded on first use
    _stop_signal: int | None = None  # SIGINT/SIGTERM caught during run()

    def __init__(
        self, cfg: TrainConfig, run_dir: str | Path, progress: bool = True, evaluator: Evaluator | None = None
    ) -> None:
        run = resolve_run(cfg, Path(run_dir))  # the run as it trains and what it starts from, before any building
        cfg, objective, device, plan = run.cfg, run.objective, run.device, run.plan
        shape, classes = run.source.shape, run.num_classes
        self.cfg, self.objective, self.source, self.run_dir = cfg, objective, run.source, run.run_dir
        self.device, self.plan, self.is_main, self.evaluator = device, plan, run.is_main, evaluator
        self.progress, self._lock = progress and run.is_main, run.lock  # the lock is held until run() ends
        try:
            nets = build_networks(
                cfg, shape, classes, device, objective.teacher_run, objective.guidance_input, objective.time_split()
            )
            self.model, self.ema, self.teacher = nets.model, nets.ema, nets.teacher
            self.amp_dtype = autocast_dtype(cfg.precision, device)
            check_batch_fits(self.model, shape, classes, plan.rows_per_rank, plan.grad_accum, device, self.amp_dtype)
            self.spec = build_spec(self.model, run.source, classes, objective, cfg.data)
            self.log_weights = log_weights(
                objective.row_kinds, kind_counts(objective.kind_rows(cfg.batch_size), plan.share)
            )
            self.views = wrap_for_training(self.model, self.ema.module, cfg.compile, device, run.world)
            self.optimizer = build_optimizer(cfg, self.model.parameters(), device)
            self._state = RunState(self.model, self.ema, self.optimizer, self.teacher, device)
            self.step, self.init_source = _start(run, self._state)  # the checkpoint's step, or 0
        except BaseException:
            self._release()
            raise
        self.last_checkpoint = run.resume.saved.path if run.resume is not None else None
        self._finite = torch.ones((), dtype=torch.bool, device=device)  # no NaN/inf seen since the last check

    # ----------------------------------------------------------------- state
    def save(self) -> Path:
        """Checkpoint the current step (refuses if a non-finite loss, gradient or weight was seen since
        the last one). Rank 0 writes; every process waits until the checkpoint is complete.
        """
        self._check_finite(weights=True)
        error: WriteFailed | None = None
        log_window = self._state.log_window_state()  # every process: one collective
        if self.is_main:
            state = self._state.to_save(log_window)
            config = ckpt.checkpoint_config(self.spec, self.step, self.cfg.to_dict())
            try:
                ckpt.save_checkpoint(
                    self.run_dir, self.step, config, self.model, self.ema.module, state, self.cfg.keep_checkpoints
                )
            except WriteFailed as exc:
                error = WriteFailed(f"{exc}; {self._last_good()}")
        if distributed.any_true(error is not None):
            raise error or WriteFailed(f"the first process could not write checkpoint {self.step}")
        self.last_checkpoint = ckpt.checkpoint_dir(self.run_dir, self.step)
        return self.last_checkpoint

    def _last_good(self) -> str:
        if self.last_checkpoint is not None and self.last_checkpoint.is_dir():
            return f"the last intact checkpoint is {self.last_checkpoint}"
        return "no checkpoint of this run was written"

    def _check_finite(self, weights: bool = False) -> None:
        """Raise TrainingDiverged on every process when any process saw a non-finite loss or gradient
        (and, with ``weights``, when a weight of the network or of its EMA is NaN or infinite)."""
        bad = not bool(self._finite)
        if weights and not bad:
            tensors = [*self.model.parameters(), *self.ema.module.parameters()]
            bad = not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
        if distributed.any_true(bad):
            raise TrainingDiverged(
                f"loss, gradient or weights became NaN/infinite before step {self.step}; stopped "
                f"({self._last_good()}); try a lower lr or grad_clip"
            )

    # ------------------------------------------------------------------ step
    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based): the config's ``lr_schedule`` after its warm-up."""
        return learning_rate(self.cfg, step)

    def autocast(self):
        """bf16 autocast context on CUDA (or when precision=bf16), else a no-op."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        """One optimizer step on the batch of ``step``; returns detached log tensors."""
        cfg = self.cfg
        x1, y = take_rows(self.source, step, cfg.batch_size, cfg.seed, self.plan.share)
        x1 = to_device(x1, self.device)  # pinned + non_blocking on CUDA: no host sync
        y = to_device(y, self.device) if self.spec.num_classes > 0 else None
        gen = seeding.generator(cfg.seed, seeding.STREAMS["targets"], step, device=self.device)
        progress = Progress(step, cfg.steps)
        refresh_from = self.objective.teacher_refresh(progress)  # e.g. progressive distillation's next stage
        if refresh_from is not None and self.teacher is not None:
            source = {"online": self.model, "ema": self.ema.module}[refresh_from]
            self.teacher.load_state_dict(ckpt.unwrap(source).state_dict())
        views = self.views
        networks = TargetNetworks(online=views.teacher_online, ema=views.teacher_ema, teacher=self.teacher)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            targets = self.objective.targets(networks, x1, y, gen, progress, rows=self.plan.share)
        if self.plan.grad_accum == 1:
            with self.autocast():
                loss, logs = self.objective.loss(views.train_model, targets)
            loss.backward()
        else:
            logs = self._accumulate(targets)
            loss = logs["loss"]
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(step)
        self.optimizer.step()
        self.ema.update(self.model)
        self._finite &= torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
        logs["grad_norm"] = grad_norm.detach()
        return logs

    def _accumulate(self, targets: Targets) -> dict[str, torch.Tensor]:
        """Backward over ``grad_accum`` row blocks; gradients and logs equal the full-batch ones.

        Under DDP the gradients are exchanged once, in the last block's backward.
        """
        total = targets.t.shape[0]
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}
        chunks = targets.split(self.plan.grad_accum)
        for i, chunk in enumerate(chunks):
            rows = chunk.t.shape[0]
            ddp = self.views.ddp
            hold = ddp is not None and i < len(chunks) - 1
            with ddp.no_sync() if hold else contextlib.nullcontext():
                with self.autocast():
                    loss, logs = self.objective.loss(self.views.train_model, chunk)
                (loss * (rows / total)).backward()
            kinds = self.objective.row_kinds
            weights = log_weights(kinds, tuple((chunk.kind == i).sum() for i in range(len(kinds))))  # no host sync
            for key, value in logs.items():
                w = torch.as_tensor(weights[key]).to(value.device, value.dtype)
                sums[key] = sums.get(key, 0) + torch.nan_to_num(value) * w
                counts[key] = counts.get(key, 0) + w
        return {k: sums[k] / counts[k] for k in sums}

    @property
    def stopped_by_signal(self) -> bool:
        """True when the last :meth:`run` ended early on SIGINT/SIGTERM (after saving a checkpoint)."""
        return self._stop_signal is not None

    def loaded_view(self) -> LoadedModel:
        """The EMA network as a :class:`~shortcut_models.inference.LoadedModel` (for sampling)."""
        if self._autoencoder is None and self.spec.autoencoder is not None:  # loaded on first use (a VAE)
            self._autoencoder = load_autoencoder(self.spec, self.device)
        return LoadedModel(
            self.last_checkpoint or self.run_dir,
            self.spec,
            self.ema.module,
            self.objective,
            self.step,
            self.device,
            self._autoencoder,
            self.cfg.precision,
            self.cfg.to_dict(),
        )

    def write_samples(self) -> Path:
        """Sample sheets of the EMA network at ``sample_steps`` into RUN/samples/step_N/."""
        out = self.run_dir / "samples" / f"step_{self.step:08d}"
        with self.autocast():
            return write_sample_sheets(
                self.loaded_view(),
                out,
                self.cfg.sample_steps,
                cfg_scale=self.cfg.sample_cfg_scale,
                progress=self.progress,
            )

    # ------------------------------------------------------------------ loop
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self._stop_signal = signum

    def _stop_requested(self) -> bool:
        """True on every process once any process caught SIGINT/SIGTERM (one CPU all-reduce per step)."""
        signum = distributed.max_int(self._stop_signal or 0)
        if signum:
            self._stop_signal = signum
        return bool(signum)

    def _log(self, means: IntervalMeans, elapsed: float, logger: RunLogger | None) -> dict[str, float]:
        """Reduce the interval's logs over processes into one row; rank 0 writes it."""
        steps = means.steps
        row = means.means(distributed.all_reduce)
        row.update(lr=self.lr_at(self.step - 1), samples_per_sec=steps * self.cfg.batch_size / max(elapsed, 1e-9))
        if self.device.type == "cuda":
            row["max_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if logger is not None:
            logger.log(self.step, row)
        return row

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def run(self, on_log: Callable[[int, dict[str, float]], None] | None = None) -> Path:
        """Train until ``cfg.steps``; returns the final checkpoint directory.

        The run directory stays locked (by rank 0) from the construction of the trainer to the end of
        this call; a failed write raises WriteFailed naming the file and the last intact checkpoint.
        """
        try:
            if self.is_main and self._lock is None:  # a second run() of this trainer
                self._lock = runlock.acquire(self.run_dir)
            return self._run(on_log)
        except OSError as exc:  # a log, sample or evaluation file could not be written
            if exc.errno not in WRITE_ERRORS:
                raise
            raise WriteFailed(
                f"cannot write {exc.filename or self.run_dir}: {exc.strerror or exc}; {self._last_good()}"
            ) from exc
        finally:
            self._release()

    def _run(self, on_log: Callable[[int, dict[str, float]], None] | None) -> Path:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.step >= cfg.steps:
            if self.is_main:
                print(f"run already complete at step {self.step}: {self.last_checkpoint}", file=sys.stderr)
            return self.last_checkpoint or self.save()
        if self.evaluator is not None:
            self.evaluator.start(self.step, self.is_main)
        logger = None
        if self.is_main:
            logger = RunLogger(
                self.run_dir,
                parse_backends(cfg.logger),
                config=cfg.to_dict(),
                name=self.run_dir.name,
                start_step=self.step,
            )
        handlers = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread: no signal handling
            handlers = {}
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=f"train {cfg.objective}",
            disable=not self.progress,
            dynamic_ncols=True,
            mininterval=1.0,
            file=sys.stderr,
        )
        means, t0 = self._state.log_window, time.perf_counter()  # restored from the checkpoint when resumed
        started = t0
        try:
            while self.step < cfg.steps and not self._stop_requested():
                logs = self.train_step(self.step)
                self.step += 1
                means.add(logs, self.log_weights)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self._check_finite()
                    row = self._log(means, time.perf_counter() - t0, logger)
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                    if on_log is not None:
                        on_log(self.step, row)
                    t0 = time.perf_counter()
                if self.evaluator is not None and self.evaluator.due(self.step):  # before its step's checkpoint
                    self._check_finite()
                    paused = time.perf_counter()
                    self.evaluator(self.loaded_view(), self.step, logger)
                    t0 += time.perf_counter() - paused  # the interval's throughput leaves the evaluation out
                if self.step % cfg.ckpt_every == 0 and self.step < cfg.steps:
                    self.save()
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.step < cfg.steps and self.is_main:
                    self.write_samples()
            final = self.save()
            bar.close()  # before the closing messages
            if self._stop_signal is None and self.is_main:
                self.samples_dir = self.write_samples()
            if self._stop_signal is not None and self.is_main:
                print(f"stopped by signal {self._stop_signal} at step {self.step}; checkpoint {final}", file=sys.stderr)
            if self.evaluator is not None and self.evaluator.count and self.is_main:
                print(self.evaluator.summary(time.perf_counter() - started), file=sys.stderr)
            return final
        finally:
            bar.close()
            if logger is not None:
                logger.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
