"""Training configuration: one flat dataclass, named presets, and ``key=value`` overrides.

A run is fully described by a :class:`TrainConfig`; it is saved inside every checkpoint (the
``training`` entry of config.json). ``TrainConfig()`` is the embedded default, class-conditional
digits, and is valid as it stands. Every key carries its own range check and whether it may change
when a run resumes (``metadata`` of the field); :func:`validate` applies them.

The objective's knobs (``bootstrap_every``, ``class_dropout``...) are defined once, on the objective
dataclasses (``shortcut_models.objectives``), and set through ``objective_args``. A knob may also be
given as a top-level key (``bootstrap_every=4``): it is moved into ``objective_args``. Knobs of
objectives other than the run's are ignored, so one preset serves every objective.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError
from .loggers import parse_backends
from .models import MODEL_NAMES
from .objectives import OBJECTIVES, all_knobs, build_objective
from .optim import LR_SCHEDULES, OPTIMIZERS
from .sampling import MAX_STEPS
from .seeding import MAX_SEED
from .validation import check_bool, check_choice, check_device, check_float, check_int

DEFAULT_PRESET = "digits"
PRECISIONS = ("auto", "fp32", "bf16")
# Sample metrics (shortcut_models.evaluation): "auto" picks swd for 2-D data, fd-digits for digits, else fid;
# fd-dinov2 (Fréchet distance in DINOv2 features) is taken on request only.
EVAL_METRICS = ("auto", "swd", "fd-digits", "fid", "fd-dinov2")

Check = Callable[[str, Any], Any]
MAX_LR = 1.0  # Adam(W) moves each weight by about lr per step: beyond 1 a run cannot learn


def _key(default: Any = dataclasses.MISSING, check: Check | None = None, resumable: bool = False, factory=None):
    """A config field with its range check and whether a resumed run may change it."""
    meta = {"check": check, "resumable": resumable}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _positive_int(name: str, value: Any) -> int:
    return check_int(name, value, low=1)


def _count(name: str, value: Any) -> int:
    return check_int(name, value, low=0)


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _mapping(name: str, value: Any) -> dict:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{name} must be a dictionary of settings, got {value!r}")
    return value


def _beta(name: str, value: Any) -> float:
    return check_float(name, value, 0.0, 1.0, high_open=True)


def _step_list(name: str, value: Any) -> list:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{name} must be a non-empty list of step counts, got {value!r}")
    for v in value:
        check_int(f"each of {name}", v, 1, MAX_STEPS)
    return value


@dataclass
class TrainConfig:
    """Every knob of a training run; the defaults are the embedded ``digits`` preset.

    ``batch_size`` is the global batch: under torchrun each of W processes computes batch_size / W rows.
    """

    preset: str = _key(DEFAULT_PRESET, lambda n, v: check_choice(n, v, tuple(PRESETS)))
    # data and network
    data: str = _key("digits", _string)  # a 2-D toy name, "digits", "latents:DIR" or "synthetic:CxHxW[:CLASSES]"
    model: str = _key("DiT-Digits", lambda n, v: check_choice(n, v, MODEL_NAMES))
    model_args: dict[str, Any] = _key(check=_mapping, factory=dict)  # e.g. {"width": 256, "depth": 4}
    class_conditional: bool = _key(True, check_bool)
    # objective: its name in the registry and its knobs (see shortcut_models.objectives)
    objective: str = _key("shortcut", lambda n, v: check_choice(n, v, tuple(OBJECTIVES)))
    # online self-consistency teacher: on a 4,000-step budget the EMA teacher lags (docs/demo/tuning.md)
    objective_args: dict[str, Any] = _key(
        check=_mapping, factory=lambda: {"class_dropout": 0.1, "bootstrap_ema": False}
    )
    # fine-tuning: a checkpoint or run directory whose weights start a fresh run (training/init_from.py)
    init_from: str = _key("", _string)
    # optimisation: the optimiser and the learning-rate schedule are named in registries (shortcut_models.optim)
    # steps may grow on resume; a decaying schedule is then recomputed for the new length (see lr_schedule)
    steps: int = _key(4000, _positive_int, resumable=True)
    batch_size: int = _key(64, _positive_int)
    optimizer: str = _key("adamw", lambda n, v: check_choice(n, v, tuple(OPTIMIZERS)))  # adamw, adam or sgd
    lr: float = _key(1e-3, lambda n, v: check_float(n, v, 0.0, MAX_LR, low_open=True))  # the peak learning rate
    weight_decay: float = _key(0.0, lambda n, v: check_float(n, v, low=0.0))  # adamw: decoupled; adam, sgd: L2
    beta1: float = _key(0.9, _beta)  # adam(w)
    beta2: float = _key(0.999, _beta)  # adam(w)
    momentum: float = _key(0.9, _beta)  # sgd only, heavy ball in [0, 1); 0 = plain SGD
    warmup_steps: int = _key(200, _count)  # linear warm-up to lr, for every schedule; 0 = none
    # after the warm-up: constant (lr), cosine or linear (lr down toward lr_min, reached one step past the last), or wsd
    # (warm-up, stable at lr, then linear down toward lr_min over the last decay_share of the steps).
    # Extending a resumed run (a larger `steps`) recomputes a decaying schedule for the new length from the
    # resumed step on: cosine and linear move up at once; wsd continues unchanged if its decay had not begun.
    lr_schedule: str = _key("constant", lambda n, v: check_choice(n, v, tuple(LR_SCHEDULES)))
    lr_min: float = _key(0.0, lambda n, v: check_float(n, v, low=0.0))  # an absolute learning rate, at most lr
    decay_share: float = _key(0.2, lambda n, v: check_float(n, v, 0.0, 1.0, low_open=True))  # wsd, in (0, 1]
    grad_clip: float = _key(0.0, lambda n, v: check_float(n, v, low=0.0))  # 0 = no clipping (the paper's recipe)
    ema_decay: float = _key(0.999, lambda n, v: check_float(n, v, 0.0, 1.0))
    ema_warmup: bool = _key(True, check_bool)  # decay min(ema_decay, (1 + n) / (10 + n)): short runs leave their init
    # same gradients up to rounding: these may change when a run resumes (e.g. on other hardware)
    grad_accum: int = _key(1, _positive_int, resumable=True)  # micro-batches per step (less memory)
    batch_per_gpu: int = _key(0, _count, resumable=True)  # > 0 sets grad_accum = batch_size / (processes * this)
    # speed
    precision: str = _key("auto", lambda n, v: check_choice(n, v, PRECISIONS))  # auto: bf16 autocast on CUDA
    compile: bool = _key(False, check_bool, resumable=True)  # torch.compile the network
    # sample sheets during training (0 = only at the end)
    sample_every: int = _key(0, _count, resumable=True)
    sample_steps: list[int] = _key(check=_step_list, resumable=True, factory=lambda: [1, 2, 4, 8, 16, 32, 128])
    sample_cfg_scale: float = _key(1.0, lambda n, v: check_float(n, v), resumable=True)
    # evaluation during training (shortcut_models.evaluation.during_training): every eval_every steps and at
    # the end, eval_num samples per step count from the same noise each time -> RUN/eval.csv, RUN/eval.png
    eval_every: int = _key(1000, _count, resumable=True)  # 0 = off
    eval_steps: list[int] = _key(check=_step_list, resumable=True, factory=lambda: [1, 4])
    eval_num: int = _key(1000, lambda n, v: check_int(n, v, low=2), resumable=True)  # samples per step count
    eval_metric: str = _key("auto", lambda n, v: check_choice(n, v, EVAL_METRICS), resumable=True)
    eval_ref_stats: str = _key("", _string, resumable=True)  # reference statistics for fid (`shortcut ref-stats`)
    eval_inception_weights: str = _key("", _string, resumable=True)  # a local Inception file for fid ("" = download)
    eval_dinov2_weights: str = _key("", _string, resumable=True)  # the DINOv2 file fd-dinov2 needs (never downloaded)
    eval_cfg_scale: float = _key(1.0, lambda n, v: check_float(n, v), resumable=True)
    # logs: RUN/metrics.csv always; plus "tensorboard", "wandb", both ("tensorboard,wandb") or "none"
    logger: str = _key("tensorboard", lambda n, v: parse_backends(_string(n, v)), resumable=True)
    # bookkeeping
    seed: int = _key(0, lambda n, v: check_int(n, v, 0, MAX_SEED))
    device: str = _key("auto", check_device, resumable=True)  # "auto", "cpu", "cuda", "cuda:1", ...
    log_every: int = _key(100, _positive_int, resumable=True)
    ckpt_every: int = _key(1000, _positive_int, resumable=True)
    keep_checkpoints: int = _key(2, _positive_int, resumable=True)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from a dict (a preset, a file, a saved run); unknown keys are a UserError.

        Objective knobs given as top-level keys go into ``objective_args`` (runs saved before
        ``objective_args`` existed store them so); ``tensorboard`` true/false becomes ``logger``.
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

    def resolved_objective_args(self) -> dict[str, Any]:
        """Every knob of the run's objective, defaults included (what the run computes with)."""
        return build_objective(self.objective, 0, self.objective_args).args()


RESUMABLE_KEYS = frozenset(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resumable"])


def normalise_keys(values: dict[str, Any]) -> dict[str, Any]:
    """Move top-level objective knobs into ``objective_args`` and ``tensorboard`` into ``logger``."""
    values = dict(values)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    knobs = [k for k in values if k in all_knobs() and k not in fields]
    if knobs:
        values["objective_args"] = {**values.get("objective_args", {}), **{k: values.pop(k) for k in knobs}}
    if "tensorboard" in values and "tensorboard" not in fields:
        values["logger"] = "tensorboard" if values.pop("tensorboard") else "none"
    return values


# 2-D toys: a residual MLP; the EMA warm-up lets a run of a few thousand steps leave its initialisation.
_TOY = {
    "model": "mlp",
    "model_args": {"width": 128, "depth": 3},
    "class_conditional": False,
    "objective_args": {},
    "steps": 3000,
    "batch_size": 256,
    "lr": 1e-3,
    "warmup_steps": 0,
}

# The paper's recipe: AdamW lr 1e-4 constant, betas (0.9, 0.999), weight decay 0.1, no warm-up, no
# gradient clipping, EMA 0.999 every step, bf16 autocast with fp32 parameters (precision auto on CUDA),
# the EMA network as self-consistency teacher, one self-consistency row in 8.
# Evaluation as in the authors' trainer: FID of 4,096 samples every 20k steps (here at 1, 4 and 128 steps),
# against the statistics `shortcut ref-stats` writes (docs/latents.md).
_PAPER_EVAL = {"eval_every": 20_000, "eval_steps": [1, 4, 128], "eval_num": 4096, "eval_metric": "fid"}
_PAPER = {
    **_PAPER_EVAL,
    "model_args": {},
    "lr": 1e-4,
    "beta1": 0.9,
    "beta2": 0.999,
    "weight_decay": 0.1,
    "warmup_steps": 0,
    "grad_clip": 0.0,
    "ema_decay": 0.999,
    "ema_warmup": False,
    "log_every": 100,
    "ckpt_every": 10_000,
    "sample_every": 20_000,
    "keep_checkpoints": 3,
}

# Each preset lists what differs from the TrainConfig defaults (the digits preset).
PRESETS: dict[str, dict[str, Any]] = {
    # The embedded default: class-conditional 8x8 digits with a small DiT, minutes on a laptop CPU. Online teacher
    # (bootstrap_ema=false) for this short budget: FD at 1 step 44.8 -> 27.7 (README; docs/demo/tuning.md says why).
    "digits": {},
    # The demo's study in miniature (make demo): unconditional digits, null label everywhere.
    # DiT-Digits/4 (patch 4, hidden 128): cheap enough per sample for the demo's 2 x 2.55M sampling passes in 20 CPU
    # minutes. bootstrap_ema=false: with 4k steps the EMA teacher (~1k steps behind, compounded over 7 levels) held
    # the large-step targets back; the online teacher halved FD at 1-4 steps (docs/demo/tuning.md).
    "digits-uncond": {
        "model": "DiT-Digits/4",
        "class_conditional": False,
        "objective_args": {"bootstrap_ema": False},
        "sample_steps": [1, 2, 4, 128],
    },
    # The paper's settings on Stable Diffusion VAE latents of 256x256 images. Point `data` at a cache made by
    # `shortcut encode` (data=latents:DIR); see docs/latents.md.
    "celebahq256": {
        **_PAPER,
        "data": "latents:data/celebahq256-latents",
        "model": "DiT-B/2",
        "class_conditional": False,
        "objective_args": {},
        "batch_size": 64,
        "steps": 410_000,
        "eval_ref_stats": "data/celebahq256-ref.npz",
    },
    "imagenet256": {
        **_PAPER,
        "data": "latents:data/imagenet256-latents",
        "model": "DiT-B/2",
        "batch_size": 256,
        "steps": 810_000,
        "sample_cfg_scale": 1.5,
        "objective_args": {"class_dropout": 0.1, "bootstrap_cfg": True, "cfg_scale": 1.5},
        "eval_ref_stats": "data/imagenet256-ref.npz",
    },
    "imagenet256-xl": {
        **_PAPER,
        "data": "latents:data/imagenet256-latents",
        "model": "DiT-XL/2",
        "batch_size": 256,
        "steps": 810_000,
        "sample_cfg_scale": 1.5,
        "objective_args": {"class_dropout": 0.1, "bootstrap_cfg": True, "cfg_scale": 1.5},
        "eval_ref_stats": "data/imagenet256-ref.npz",
    },
    "checkerboard": {**_TOY, "data": "checkerboard"},
    "eight_gaussians": {**_TOY, "data": "eight_gaussians"},
    "moons": {**_TOY, "data": "moons"},
    "spirals": {**_TOY, "data": "spirals"},
}


def parse_value(text: str) -> Any:
    """Parse an override value: JSON where it parses (numbers, true/false, lists, dicts), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings; ``model_args.width=512`` sets one entry of a dict field."""
    values = json.loads(json.dumps(values))
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        value = parse_value(text)
        if "." in key:
            outer, inner = key.split(".", 1)
            if not isinstance(values.get(outer), dict):
                raise UserError(f"unknown config key: {outer!r} is not a dictionary field")
            values[outer][inner] = value
        else:
            values[key] = value
        values = normalise_keys(values)
    return values


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config file into a dict of overrides."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise UserError(f"{path}: TOML config files need Python 3.11 or newer; use JSON") from None
            values = tomllib.loads(text)
        else:
            values = json.loads(text)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise UserError(f"cannot parse config file {path}: {exc}") from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a table of keys (a JSON object), got {type(values).__name__}")
    return normalise_keys(values)


def build_config(
    preset: str | None = None, objective: str | None = None, config_file: str | None = None, overrides: list[str] = ()
) -> TrainConfig:
    """Preset, then config file, then --objective, then key=value overrides; validated.

    The preset (the values that the file and the overrides change) is the last ``preset=NAME``
    override, else ``preset``, else the file's ``preset`` key, else the default.
    """
    file_values = load_config_file(config_file) if config_file else {}
    name = preset or file_values.get("preset", DEFAULT_PRESET)
    for item in overrides:
        key, _, text = item.partition("=")
        if key == "preset":
            name = parse_value(text)
    if not isinstance(name, str) or name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    values = TrainConfig(preset=name).to_dict()
    values.update(PRESETS[name])
    if config_file:
        if "objective_args" in file_values:  # a file's knobs add to the preset's
            file_values["objective_args"] = {**values["objective_args"], **file_values["objective_args"]}
        values.update(file_values)
        values["preset"] = name
    if objective:
        values["objective"] = objective
    values = apply_overrides(values, list(overrides))
    cfg = TrainConfig.from_dict(values)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Reject values that cannot run, with one line naming the key (UserError)."""
    try:
        for f in dataclasses.fields(cfg):
            f.metadata["check"](f.name, getattr(cfg, f.name))
        objective = build_objective(cfg.objective, 0, cfg.objective_args)
        objective.teacher_rows(cfg.batch_size)  # e.g. a batch too small for one self-consistency row
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
