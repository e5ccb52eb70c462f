"""The training configuration: one dataclass whose every key carries its allowed values, its meaning,
its section and whether a resumed run may change it; and the checks across keys (:func:`validate`).

``TrainConfig()`` holds the values every preset starts from, and is valid as it stands: those of the
embedded default, class-conditional digits (the ``digits`` preset), with no objective knob set. A run is
fully described by it; it is saved inside every checkpoint (the ``training`` entry of config.json, flat
keys). The objective's knobs (``bootstrap_every``, ``time_sampler``...) are defined once, on the objective
dataclasses and their recipe (``shortcut_models.objectives``), and set flat through ``objective_args``; a
knob left unset there is at its objective's own default (its paper's recipe). A preset that sets one names
it (``config/presets.py``).

``model_args`` holds the network's own settings. One of them, ``step_input`` (what the network's
step-size embedder sees: "level", -log2 d, or "size", d itself), defaults to the objective's own
choice (``Objective.step_input``) in a new run; the trainer writes the value it used into the run's
config (``shortcut_models.training.networks``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..models import MODEL_NAMES, check_step_input
from ..objectives import OBJECTIVES, all_knobs, build_objective
from ..optim import LR_SCHEDULES, OPTIMIZERS
from ..seeding import MAX_SEED
from ..validation import Flag, Float, Int, OneOf, Text
from .presets import DEFAULT_PRESET, PRESETS
from .specs import Backends, Device, Settings, StepList

PRECISIONS = ("auto", "fp32", "bf16")
# Sample metrics (shortcut_models.evaluation): "auto" picks swd for 2-D data, fd-digits for digits, else fid;
# fd-dinov2 (Fréchet distance in DINOv2 features) is taken on request only.
EVAL_METRICS = ("auto", "swd", "fd-digits", "fid", "fd-dinov2")
MAX_LR = 1.0  # Adam(W) moves each weight by about lr per step: beyond 1 a run cannot learn
STEP_INPUT = "step_input"  # the model_args key of the network's step-size input (level or size)
# config keys that 0.1.x read and 0.2.0 does not -> what replaced them (named in the error an old key gets)
RENAMED = {"bootstrap_ema": "target_network=ema or online", "tensorboard": "logger=tensorboard or none"}


def _key(default: Any, spec: Any, meaning: str, resumable: bool = False, factory: Any = None) -> Any:
    """A config key: its default (or ``factory``), allowed values, meaning and whether a resumed run may change it."""
    meta = {"spec": spec, "meaning": meaning, "resumable": resumable}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every setting of a training run; the defaults are the embedded ``digits`` preset's, less the objective
    knobs it names (unset here: each objective's own defaults).

    ``batch_size`` is the global batch: under torchrun each of W processes computes batch_size / W rows.
    """

    preset: str = _key(DEFAULT_PRESET, OneOf(PRESETS), "the named preset these values start from")
    data: str = _key(
        "digits", Text(), 'a 2-D toy name, "digits", "latents:DIR" (`shortcut encode`) or "synthetic:CxHxW[:CLASSES]"'
    )
    model: str = _key("DiT-Digits", OneOf(MODEL_NAMES), "the network (a DiT preset or mlp)")
    model_args: dict[str, Any] = _key(
        None,
        Settings(),
        'the network\'s own settings, e.g. {"width": 256, "depth": 4}; step_input: "level" (-log2 d) or "size" '
        "(d), unset: the objective's",
        factory=dict,
    )
    class_conditional: bool = _key(True, Flag(), "condition on the data's labels (false: the null label everywhere)")
    objective: str = _key("shortcut", OneOf(OBJECTIVES), "the training objective (its knobs: objective_args)")
    objective_args: dict[str, Any] = _key(
        None,
        Settings(),
        "the objective's knobs (also settable as KNOB=VALUE or objective.KNOB=VALUE); unset: the objective's own",
        factory=dict,
    )
    init_from: str = _key("", Text("none"), "a checkpoint or run whose weights start a fresh run (fine-tuning)")
    steps: int = _key(4000, Int(1), "training steps of the run (may grow when a run resumes)", resumable=True)
    batch_size: int = _key(64, Int(1), "rows per step, over every process")
    optimizer: str = _key("adamw", OneOf(OPTIMIZERS), "the optimiser (shortcut_models.optim)")
    lr: float = _key(1e-3, Float(0.0, MAX_LR, low_open=True), "the peak learning rate")
    weight_decay: float = _key(0.0, Float(0.0), "weight decay (adamw: decoupled; adam, sgd: an L2 term)")
    beta1: float = _key(0.9, Float(0.0, 1.0, high_open=True), "adam(w): decay of the first moment")
    beta2: float = _key(0.999, Float(0.0, 1.0, high_open=True), "adam(w): decay of the second moment")
    momentum: float = _key(0.9, Float(0.0, 1.0, high_open=True), "sgd: heavy-ball momentum (0: plain SGD)")
    warmup_steps: int = _key(200, Int(0), "steps of the linear learning-rate warm-up, every schedule (0: none)")
    # Extending a resumed run (a larger `steps`) recomputes a decaying schedule for the new length from the
    # resumed step on: cosine and linear move up at once; wsd continues unchanged if its decay had not begun.
    lr_schedule: str = _key(
        "constant", OneOf(LR_SCHEDULES), "after the warm-up: constant, or cosine, linear, wsd down to lr_min"
    )
    lr_min: float = _key(0.0, Float(0.0), "the learning rate a decaying schedule ends at (at most lr)")
    decay_share: float = _key(0.2, Float(0.0, 1.0, low_open=True), "wsd: the share of the steps spent decaying")
    grad_clip: float = _key(0.0, Float(0.0), "bound on the gradient norm (0: no clipping, the paper's recipe)")
    ema_decay: float = _key(0.999, Float(0.0, 1.0), "decay of the moving average of the weights (what samples)")
    ema_warmup: bool = _key(True, Flag(), "EMA decay min(ema_decay, (1 + n) / (10 + n)): short runs leave their init")
    grad_accum: int = _key(1, Int(1), "micro-batches per step (less memory, same gradients)", resumable=True)
    batch_per_gpu: int = _key(0, Int(0), "rows per process per micro-batch; > 0 sets grad_accum", resumable=True)
    precision: str = _key("auto", OneOf(PRECISIONS), "auto: bf16 autocast on CUDA, fp32 on CPU")
    compile: bool = _key(False, Flag(), "torch.compile the network", resumable=True)
    sample_every: int = _key(0, Int(0), "sample sheets every this many steps (0: at the end only)", resumable=True)
    sample_steps: list[int] = _key(
        None,
        StepList(),
        "the step counts of the sample sheets",
        resumable=True,
        factory=lambda: [1, 2, 4, 8, 16, 32, 128],
    )
    sample_cfg_scale: float = _key(1.0, Float(), "guidance weight of the sample sheets", resumable=True)
    eval_every: int = _key(1000, Int(0), "evaluate every this many steps and at the end (0: off)", resumable=True)
    eval_steps: list[int] = _key(
        None, StepList(), "the step counts evaluated during training", resumable=True, factory=lambda: [1, 4]
    )
    eval_num: int = _key(1000, Int(2), "samples per step count, from the same noise each time", resumable=True)
    eval_metric: str = _key(
        "auto", OneOf(EVAL_METRICS), "auto: swd for 2-D data, fd-digits for digits, else fid", resumable=True
    )
    eval_ref_stats: str = _key("", Text("none"), "reference statistics for fid (`shortcut ref-stats`)", resumable=True)
    eval_inception_weights: str = _key("", Text("download"), "a local Inception weights file for fid", resumable=True)
    eval_dinov2_weights: str = _key("", Text("none"), "the DINOv2 weights file fd-dinov2 needs", resumable=True)
    eval_cfg_scale: float = _key(1.0, Float(), "guidance weight of the evaluation samples", resumable=True)
    logger: str = _key("tensorboard", Backends(), "where logs go besides RUN/metrics.csv", resumable=True)
    seed: int = _key(0, Int(0, MAX_SEED), "seed of the data order, the draws and the initial weights")
    device: str = _key("auto", Device(), "where the run computes", resumable=True)
    log_every: int = _key(100, Int(1), "steps per log row", resumable=True)
    ckpt_every: int = _key(1000, Int(1), "steps per checkpoint (also at the end and on a stop signal)", resumable=True)
    keep_checkpoints: int = _key(2, Int(1), "checkpoints kept in the run directory", resumable=True)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from a dict of flat keys (a preset, a saved run); unknown keys are a UserError.

        Objective knobs given as top-level keys go into ``objective_args`` (:func:`normalise_keys`).
        """
        values = normalise_keys(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown config key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        return cls(**values)

    def network_classes(self, data_classes: int) -> int:
        """Classes the network is conditioned on: the data's when class_conditional, else 0."""
        if self.class_conditional and data_classes == 0:
            raise UserError(f"class_conditional=true but data {self.data!r} has no labels")
        return data_classes if self.class_conditional else 0

    def with_step_input(self, choice: str) -> TrainConfig:
        """This config with ``model_args.step_input`` set to ``choice``, unless it sets one already."""
        if STEP_INPUT in self.model_args:
            return self
        return dataclasses.replace(self, model_args={**self.model_args, STEP_INPUT: choice})

    def resolved_objective_args(self) -> dict[str, Any]:
        """Every knob of the run's objective, defaults included (what the run computes with)."""
        return build_objective(self.objective, 0, self.objective_args).args()


RESUMABLE_KEYS = frozenset(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resumable"])


def normalise_keys(values: dict[str, Any]) -> dict[str, Any]:
    """Move top-level objective knobs into ``objective_args``; UserError on an old name of
    :data:`RENAMED`, naming what replaced it."""
    values = dict(values)
    args = values.get("objective_args")
    old = [k for k in RENAMED if k in values or (isinstance(args, dict) and k in args)]
    if old:
        raise UserError(f"unknown config key {old[0]!r} (a name of 0.1.x; now {RENAMED[old[0]]})")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    knobs = [k for k in values if k in all_knobs() and k not in fields]
    if knobs:
        values["objective_args"] = {**values.get("objective_args", {}), **{k: values.pop(k) for k in knobs}}
    return values


def validate(cfg: TrainConfig) -> None:
    """Reject values that cannot run, with one line naming the key (UserError)."""
    try:
        for f in dataclasses.fields(cfg):
            f.metadata["spec"](f.name, getattr(cfg, f.name))
        objective = build_objective(cfg.objective, 0, cfg.objective_args)
        objective.kind_rows(cfg.batch_size)  # e.g. a batch too small for one self-consistency row
        if STEP_INPUT in cfg.model_args:
            check_step_input(cfg.model_args[STEP_INPUT], f"model_args.{STEP_INPUT}")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    for key in ("sample_steps", "eval_steps"):
        if any(s > objective.max_steps for s in getattr(cfg, key)):
            raise UserError(f"{key} {getattr(cfg, key)} go beyond max_steps {objective.max_steps}")
    if cfg.lr_min > cfg.lr:
        raise UserError(f"lr_min {cfg.lr_min} exceeds lr {cfg.lr}: a decaying schedule ends at or below lr")
    if cfg.lr * cfg.weight_decay > 1:
        raise UserError(
            f"weight_decay {cfg.weight_decay} times lr {cfg.lr} exceeds 1: weights would change sign each step"
        )
    if cfg.batch_size % cfg.grad_accum:
        raise UserError(f"batch_size {cfg.batch_size} is not divisible by grad_accum {cfg.grad_accum}")
    if cfg.batch_per_gpu and cfg.batch_size % cfg.batch_per_gpu:
        raise UserError(f"batch_size {cfg.batch_size} is not divisible by batch_per_gpu {cfg.batch_per_gpu}")
