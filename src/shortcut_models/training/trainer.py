"""The training loop: data -> objective targets (teacher = EMA) -> loss -> optimizer -> EMA.

Each step is a pure function of (state, step): the data batch and the objective's random draws
come from generators keyed by the step (see :mod:`shortcut_models.seeding`), so a run stopped and
resumed from its checkpoint computes exactly what an uninterrupted run computes. The learning rate of
a step is a pure function of the step and the config (:mod:`shortcut_models.optim`).
Checkpoints are written every ``ckpt_every`` steps, at the end, and on SIGINT/SIGTERM; a NaN or
infinite loss, gradient or weight stops the run before anything non-finite is saved.

One writer per run directory: the trainer locks it (:mod:`shortcut_models.runlock`) from its
construction to the end of :meth:`Trainer.run`, tidies what crashed writers left, and resumes from the
newest intact checkpoint (a damaged newer one is renamed ``damaged-step_N``, with a warning).

Under torchrun (see :mod:`shortcut_models.distributed` and docs/distributed.md) ``batch_size`` is the global batch:
process k of W computes global rows k, k + W, ... of each step (data, noise, times and levels of a
row do not depend on W), DistributedDataParallel averages the gradients, and rank 0 alone writes
logs, samples and checkpoints. A stop signal on any process stops every process at the same step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from .. import checkpoints as ckpt
from .. import distributed, runlock, seeding
from ..autoencoders import Autoencoder
from ..checkpoints import ModelSpec
from ..config import RESUMABLE_KEYS, TrainConfig, validate
from ..data import build_source, take_rows
from ..errors import TrainingDiverged, UserError, WriteFailed, first_line
from ..inference import LoadedModel, load_autoencoder, write_sample_sheets
from ..loggers import RunLogger, parse_backends
from ..models import build_model, network_spec
from ..objectives import Targets, build_objective, log_weights
from ..optim import build_optimizer, learning_rate
from ..runtime import autocast_dtype, to_device
from ..seeding import RowShare
from .ema import EMA
from .init_from import InitSource, load_initial_weights
from .interval_means import IntervalMeans
from .memory import check_batch_fits
from .teacher import frozen_copy, load_teacher, teacher_checkpoint

# errno values of a write that cannot succeed: disk full, quota, file-size limit, read-only file system
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def comparable(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that fix what a run computes, with every objective knob spelled out, for the
    check that a resumed run continues the run in its directory."""
    values = {k: v for k, v in cfg.to_dict().items() if k not in RESUMABLE_KEYS and k != "objective_args"}
    values.update({f"objective_args.{k}": v for k, v in cfg.resolved_objective_args().items()})
    return values


class Evaluator(Protocol):
    """Evaluation during training, called by :meth:`Trainer.run` (implemented by
    ``shortcut_models.evaluation.TrainingEvaluator``; :func:`shortcut_models.experiments.build_trainer`
    builds one from the config's eval_* keys)."""

    def start(self, step: int, is_main: bool) -> None:
        """The run starts or resumes at ``step`` (results of later steps are dropped)."""

    def due(self, step: int) -> bool:
        """Whether the training step ``step``, just finished, is evaluated."""

    def __call__(self, model: LoadedModel, step: int, logger: RunLogger | None) -> object:
        """Evaluate ``model`` on every process; rank 0 (which holds ``logger``) records the results."""


class Trainer:
    """Owns the model, EMA, optimizer and run directory of one training run.

    ``evaluator``: evaluation during training (see :class:`Evaluator`); None evaluates nothing.
    """

    def __init__(
        self, cfg: TrainConfig, run_dir: str | Path, progress: bool = True, evaluator: Evaluator | None = None
    ) -> None:
        validate(cfg)  # a config built in Python gets the checks of the command line
        self.cfg = cfg
        self.evaluator = evaluator
        self.run_dir = Path(run_dir)
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.is_main = self.rank == 0
        self.progress = progress and self.is_main
        self.rows_per_rank, self.grad_accum = distributed.split_batch(
            cfg.batch_size, self.world, cfg.grad_accum, cfg.batch_per_gpu
        )
        self.share = RowShare.interleaved(cfg.batch_size, self.rank, self.world)
        self.device = distributed.resolve_device(cfg.device)
        self.source = build_source(cfg.data)
        self.num_classes = cfg.network_classes(self.source.num_classes)
        torch.manual_seed(seeding.derive_seed(cfg.seed, 99))  # network initialisation
        self.model = build_model(cfg.model, self.source.shape, self.num_classes, cfg.model_args).to(self.device)
        self.objective = build_objective(cfg.objective, self.num_classes, cfg.objective_args)
        if self.objective.teacher_run and not cfg.init_from:  # the student starts from the teacher run
            cfg = self.cfg = dataclasses.replace(cfg, init_from=self.objective.teacher)
        check_batch_fits(  # a batch too large for the device is refused before anything else happens
            self.model,
            self.source.shape,
            self.num_classes,
            self.rows_per_rank,
            self.grad_accum,
            self.device,
            autocast_dtype(cfg.precision, self.device),
        )
        info = self.source.info
        self.spec = ModelSpec(
            network=network_spec(self.model),
            sample_shape=info.shape,
            num_classes=self.num_classes,
            objective=self.objective.name,
            objective_args=self.objective.args(),
            sampling_d=self.objective.sampling_d,
            data_shape=info.data_shape,
            data=cfg.data,
            autoencoder=info.autoencoder,
            scaling_factor=info.scaling_factor,
        )
        n_teacher = self.share.count_below(self.objective.teacher_rows(cfg.batch_size))
        self.log_weights = log_weights(self.rows_per_rank, n_teacher)
        self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup)
        self.amp_dtype = autocast_dtype(cfg.precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        # compiled views share parameters with the plain modules (checkpoints save the plain ones)
        self.ddp = distributed.wrap_ddp(self.model, self.device) if self.world > 1 else None
        net = self.ddp if self.ddp is not None else self.model
        self.train_model = torch.compile(net) if cfg.compile else net
        self.teacher_ema = torch.compile(self.ema.module) if cfg.compile else self.ema.module
        # the online network as teacher (bootstrap_ema=false) bypasses DDP: a no-grad call is no collective
        plain = (torch.compile(self.model) if cfg.compile else self.model) if self.ddp is not None else None
        self.teacher_online = self.train_model if plain is None else plain
        self.optimizer = build_optimizer(cfg, self.model.parameters(), self.device)
        self.step = 0
        self.last_checkpoint: Path | None = None
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)
        self._stop_signal: int | None = None
        self.samples_dir: Path | None = None
        self.init_source: InitSource | None = None
        self._autoencoder: Autoencoder | None = None
        self._lock: runlock.RunLock | None = None  # rank 0's lock on the run directory, held until run() ends
        # the bound teacher of a teacher_run objective: its weights come from the teacher run (fresh) or
        # from this run's checkpoint (resumed)
        self.teacher = frozen_copy(self.model) if self.objective.teacher_run else None
        if self.teacher is not None:
            self.objective.bind_teacher(self.teacher)
        try:
            self._resume()
            if self.teacher is not None and self.last_checkpoint is None:
                load_teacher(self.teacher, teacher_checkpoint(cfg, self.objective.teacher))
        except BaseException:
            self._release()
            raise
        if self.last_checkpoint is None and cfg.init_from:  # a fresh fine-tuning run: see training/init_from.py
            self.init_source = load_initial_weights(self.model, self.ema.module, cfg)
            if self.is_main:
                print(self.init_source.describe(), file=sys.stderr)

    # ----------------------------------------------------------------- state
    def _resume(self) -> None:
        """Take the run directory (rank 0 locks it and tidies what crashed writers left), then load
        the newest intact checkpoint on every process."""
        error: UserError | None = None
        step = -1
        if self.is_main:
            try:
                self._lock = runlock.acquire(self.run_dir)
                for note in ckpt.recover_partial(self.run_dir):
                    print(f"note: {note}", file=sys.stderr)
                step = self._resume_newest_intact()
            except UserError as exc:
                error = exc
        if distributed.any_true(error is not None):
            raise error or UserError(f"the first process could not open {self.run_dir}")
        step = distributed.max_int(step)  # rank 0's choice (the others hold -1)
        if not self.is_main:
            latest = ckpt.latest_checkpoint(self.run_dir)
            try:
                if (ckpt.step_of(latest) if latest is not None else -1) != step:
                    raise UserError(f"the first process resumes {self.run_dir} at step {step}, this one sees {latest}")
                if step >= 0:
                    self._load(ckpt.checkpoint_dir(self.run_dir, step))
            except UserError as exc:
                error = UserError(
                    f"{exc}; the processes must see the same run directory, on a file system every node shares"
                )
        if distributed.any_true(error is not None):
            raise error or UserError(f"another process could not load its checkpoint from {self.run_dir}")

    def _resume_newest_intact(self) -> int:
        """Load the newest checkpoint that is intact; returns its step (-1: none, a fresh run).

        Damaged newer checkpoints are renamed ``damaged-step_N`` (kept, never deleted) with one warning
        each; when none is intact, the run stops with UserError rather than start over from step 0.
        """
        damaged: list[tuple[Path, str]] = []
        for path in reversed(ckpt.list_checkpoints(self.run_dir)):
            try:
                self._load(path)
            except ckpt.DamagedCheckpoint as exc:
                damaged.append((path, str(exc)))
                continue
            for bad, problem in damaged:
                kept = ckpt.set_aside(bad)
                print(
                    f"warning: resuming from {path.name}: {problem}; that checkpoint is kept as {kept}", file=sys.stderr
                )
            return self.step
        if damaged:
            path, problem = damaged[0]
            raise UserError(
                f"no intact checkpoint to resume in {self.run_dir}: {problem}; move the damaged checkpoint(s) "
                "away to start the run over"
            )
        return -1

    def _load(self, path: Path) -> None:
        """Load checkpoint ``path`` into the model, EMA, optimizer and random state; DamagedCheckpoint
        when a file is unreadable, UserError when it holds a run with a different config."""
        config = ckpt.read_config(path)
        training = ckpt.training_config(config)
        if not isinstance(training, dict):
            raise ckpt.DamagedCheckpoint(f"{path / ckpt.CONFIG} holds no training config (a JSON object)")
        try:  # runs saved before init_from existed lack it
            saved = comparable(TrainConfig.from_dict({"init_from": "", **training}))
        except (UserError, ValueError, TypeError) as exc:
            raise ckpt.DamagedCheckpoint(f"{path / ckpt.CONFIG} holds no valid training config ({exc})") from None
        mine = comparable(self.cfg)
        diff = [k for k in mine if saved.get(k) != mine[k]]
        if diff:
            k = diff[0]
            raise UserError(
                f"{self.run_dir} holds a run with a different config ({k}: {saved.get(k)!r} there, {mine[k]!r} now); "
                "use another --out or the same settings"
            )
        online = ckpt.read_weights(path / ckpt.ONLINE_WEIGHTS)
        ema = ckpt.read_weights(path / ckpt.EMA_WEIGHTS)
        state = ckpt.load_state(path)
        ckpt.load_tensors(self.model, online, path / ckpt.ONLINE_WEIGHTS)
        ckpt.load_tensors(self.ema.module, ema, path / ckpt.EMA_WEIGHTS)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.ema.load_state_dict(state["ema"])
            torch.set_rng_state(state["rng_cpu"])
            if self.device.type == "cuda" and state.get("rng_cuda") is not None:
                torch.cuda.set_rng_state(state["rng_cuda"], self.device)
            self.step = int(state["step"])
            if self.teacher is not None:
                if "teacher" not in state:
                    raise UserError(f"{path} holds no teacher weights; it was not saved by a distillation run")
                self.teacher.load_state_dict(state["teacher"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise ckpt.DamagedCheckpoint(f"{path / ckpt.STATE} does not fit this run ({first_line(exc)})") from None
        self.last_checkpoint = path

    def save(self) -> Path:
        """Checkpoint the current step (refuses if a non-finite loss, gradient or weight was seen since
        the last one). Rank 0 writes; every process waits until the checkpoint is complete.
        """
        self._check_finite(weights=True)
        error: WriteFailed | None = None
        if self.is_main:
            state = {
                "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            }
            if self.teacher is not None:
                state["teacher"] = self.teacher.state_dict()
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
        x1, y = take_rows(self.source, step, cfg.batch_size, cfg.seed, self.share)
        x1 = to_device(x1, self.device)  # pinned + non_blocking on CUDA: no host sync
        y = to_device(y, self.device) if self.num_classes > 0 else None
        gen = seeding.generator(cfg.seed, seeding.STREAMS["targets"], step, device=self.device)
        self.objective.begin_step(step, cfg.steps)
        new_teacher = self.objective.teacher_refresh(step, self.model, self.ema.module)
        if new_teacher is not None and self.teacher is not None:
            self.teacher.load_state_dict(ckpt.unwrap(new_teacher).state_dict())
        teacher = self.objective.select_teacher(self.teacher_online, self.teacher_ema)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            targets = self.objective.targets(teacher, x1, y, gen, rows=self.share)
        if self.grad_accum == 1:
            with self.autocast():
                loss, logs = self.objective.loss(self.train_model, targets)
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
        chunks = targets.split(self.grad_accum)
        for i, chunk in enumerate(chunks):
            rows = chunk.t.shape[0]
            hold = self.ddp is not None and i < len(chunks) - 1
            with self.ddp.no_sync() if hold else contextlib.nullcontext():
                with self.autocast():
                    loss, logs = self.objective.loss(self.train_model, chunk)
                (loss * (rows / total)).backward()
            weights = log_weights(rows, chunk.bootstrap.sum())
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
                self.loaded_view(), out, self.cfg.sample_steps, cfg_scale=self.cfg.sample_cfg_scale
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
        means, t0 = IntervalMeans(), time.perf_counter()
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
