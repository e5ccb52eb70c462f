"""Training configuration: one flat dataclass, named presets, and ``key=value`` overrides.

A run is fully described by a :class:`TrainConfig`; it is saved as ``config.json`` inside every
checkpoint, so a checkpoint directory is self-describing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError

DEFAULT_PRESET = "digits"


@dataclass
class TrainConfig:
    """Every knob of a training run (defaults: the 2-D checkerboard with the shortcut objective)."""

    preset: str = DEFAULT_PRESET
    # data and network
    data: str = "digits"  # a 2-D toy name or "digits"
    model: str = "mlp"
    model_args: dict[str, Any] = field(default_factory=dict)  # e.g. {"width": 256, "depth": 4}
    class_conditional: bool = False
    # objective (see objectives.Shortcut for the meaning of each)
    objective: str = "shortcut"  # "shortcut" or "flow"
    bootstrap_every: int = 8
    bootstrap_ema: bool = True
    bootstrap_cfg: bool = False
    cfg_scale: float = 1.0
    dt_bias: bool = False
    class_dropout: float = 0.0
    max_steps: int = 128
    # fine-tuning: a checkpoint or run directory whose weights start a fresh run (training/init_from.py)
    init_from: str = ""
    # optimisation
    steps: int = 3000
    batch_size: int = 256  # the global batch: under torchrun each of W processes computes batch_size / W rows
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 0
    grad_clip: float = 0.0  # 0 = no clipping (the paper's recipe)
    ema_decay: float = 0.999
    ema_warmup: bool = False
    grad_accum: int = 1  # split each batch into this many micro-batches (same result, less memory)
    batch_per_gpu: int = 0  # micro-batch per process; > 0 sets grad_accum = batch_size / (processes * this)
    # speed
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU), "fp32" or "bf16"
    compile: bool = False  # torch.compile the network
    # sample sheets during training (0 = only at the end)
    sample_every: int = 0
    sample_steps: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 128])
    sample_cfg_scale: float = 1.0
    tensorboard: bool = True  # also log to RUN/tensorboard when tensorboard is installed
    # bookkeeping
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    log_every: int = 100
    ckpt_every: int = 1000
    keep_checkpoints: int = 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown config key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        return cls(**values)


# Keys whose change does not alter what a resumed run computes.
RESUMABLE_KEYS = {
    "steps", "log_every", "ckpt_every", "keep_checkpoints", "device", "compile",
    "sample_every", "sample_steps", "sample_cfg_scale", "tensorboard",
    "grad_accum", "batch_per_gpu",  # same gradients up to rounding: resume on other hardware
}

# Short CPU runs: the EMA warm-up lets a run of a few thousand steps leave its initialisation (the
# paper's 400k-step runs use a plain 0.999 decay).
_TOY_PRESET = {"model": "mlp", "model_args": {"width": 128, "depth": 3}, "class_conditional": False,
               "steps": 3000, "batch_size": 256, "lr": 1e-3, "ema_warmup": True}

# The paper's recipe: AdamW lr 1e-4 constant, betas (0.9, 0.999), weight decay 0.1, no warm-up, no
# gradient clipping, EMA 0.999 every step, bf16 autocast with fp32 parameters (precision auto on CUDA).
_PAPER = {"model_args": {}, "lr": 1e-4, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.1, "warmup_steps": 0,
          "grad_clip": 0.0, "ema_decay": 0.999, "ema_warmup": False, "bootstrap_every": 8, "log_every": 100,
          "ckpt_every": 10_000, "sample_every": 20_000, "keep_checkpoints": 3}

PRESETS: dict[str, dict[str, Any]] = {
    # The embedded default: class-conditional 8x8 digits with a small DiT, minutes on a laptop CPU. Online teacher
    # (bootstrap_ema=false) for this short budget: FD at 1 step 44.8 -> 27.7 (README; docs/demo/tuning.md says why).
    "digits": {"data": "digits", "model": "DiT-Digits", "model_args": {}, "class_conditional": True,
               "class_dropout": 0.1, "steps": 4000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 200,
               "ema_warmup": True, "bootstrap_ema": False, "ckpt_every": 1000, "log_every": 100, "sample_cfg_scale": 1.0},
    # The seed's study in miniature (make demo): unconditional digits, null label everywhere.
    # DiT-Digits/4 (patch 4, hidden 128): cheap enough per sample for the demo's 2 x 2.55M sampling passes in 20 CPU
    # minutes. bootstrap_ema=false: with 4k steps the EMA teacher (~1k steps behind, compounded over 7 levels) held
    # the large-step targets back; the online teacher halved FD at 1-4 steps (docs/demo/tuning.md).
    "digits-uncond": {"data": "digits", "model": "DiT-Digits/4", "model_args": {}, "class_conditional": False,
                      "class_dropout": 0.0, "steps": 4000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 200,
                      "ema_warmup": True, "bootstrap_ema": False, "ckpt_every": 1000, "log_every": 100,
                      "sample_steps": [1, 2, 4, 128]},
    # The paper's settings (ALGORITHM.md) on Stable Diffusion VAE latents of 256x256 images. Point `data`
    # at a cache made by `shortcut encode` (data=latents:DIR); see docs/latents.md.
    "celebahq256": {**_PAPER, "data": "latents:data/celebahq256-latents", "model": "DiT-B/2",
                    "class_conditional": False, "batch_size": 64, "steps": 410_000},
    "imagenet256": {**_PAPER, "data": "latents:data/imagenet256-latents", "model": "DiT-B/2",
                    "class_conditional": True, "batch_size": 256, "steps": 810_000, "class_dropout": 0.1,
                    "bootstrap_cfg": True, "cfg_scale": 1.5, "sample_cfg_scale": 1.5},
    "imagenet256-xl": {**_PAPER, "data": "latents:data/imagenet256-latents", "model": "DiT-XL/2",
                       "class_conditional": True, "batch_size": 256, "steps": 810_000, "class_dropout": 0.1,
                       "bootstrap_cfg": True, "cfg_scale": 1.5, "sample_cfg_scale": 1.5},
    "checkerboard": {**_TOY_PRESET, "data": "checkerboard"},
    "eight_gaussians": {**_TOY_PRESET, "data": "eight_gaussians"},
    "moons": {**_TOY_PRESET, "data": "moons"},
    "spirals": {**_TOY_PRESET, "data": "spirals"},
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
    return values


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config file into a dict of overrides."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise UserError(f"{path}: TOML config files need Python 3.11 or newer; use JSON") from None
            return tomllib.loads(text)
        return json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise UserError(f"cannot parse config file {path}: {exc}") from None


def build_config(
    preset: str | None = None, objective: str | None = None, config_file: str | None = None, overrides: list[str] = ()
) -> TrainConfig:
    """Preset, then config file, then --objective, then key=value overrides; validated."""
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    values = TrainConfig(preset=name).to_dict()
    values.update(PRESETS[name])
    if config_file:
        values.update(load_config_file(config_file))
    if objective:
        values["objective"] = objective
    values = apply_overrides(values, list(overrides))
    cfg = TrainConfig.from_dict(values)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Reject values that cannot run, with one clear message."""
    if cfg.objective not in ("shortcut", "flow"):
        raise UserError(f"objective must be 'shortcut' or 'flow', got {cfg.objective!r}")
    if not isinstance(cfg.init_from, str):
        raise UserError(f"init_from must be a checkpoint or run directory path, got {cfg.init_from!r}")
    for key in ("steps", "batch_size", "log_every", "ckpt_every", "keep_checkpoints", "max_steps", "bootstrap_every", "grad_accum"):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{key} must be a positive integer, got {value!r}")
    if not (isinstance(cfg.lr, (int, float)) and cfg.lr > 0):
        raise UserError(f"lr must be a positive number, got {cfg.lr!r}")
    if not 0.0 <= cfg.ema_decay <= 1.0:
        raise UserError(f"ema_decay must lie in [0, 1], got {cfg.ema_decay!r}")
    if not 0.0 <= cfg.class_dropout <= 1.0:
        raise UserError(f"class_dropout must lie in [0, 1], got {cfg.class_dropout!r}")
    if cfg.precision not in ("auto", "fp32", "bf16"):
        raise UserError(f"precision must be 'auto', 'fp32' or 'bf16', got {cfg.precision!r}")
    if cfg.batch_size % cfg.grad_accum:
        raise UserError(f"batch_size {cfg.batch_size} is not divisible by grad_accum {cfg.grad_accum}")
    if isinstance(cfg.batch_per_gpu, bool) or not isinstance(cfg.batch_per_gpu, int) or cfg.batch_per_gpu < 0:
        raise UserError(f"batch_per_gpu must be an integer >= 0 (0 = batch_size / processes), got {cfg.batch_per_gpu!r}")
    if cfg.batch_per_gpu and cfg.batch_size % cfg.batch_per_gpu:
        raise UserError(f"batch_size {cfg.batch_size} is not divisible by batch_per_gpu {cfg.batch_per_gpu}")
    if isinstance(cfg.sample_every, bool) or not isinstance(cfg.sample_every, int) or cfg.sample_every < 0:
        raise UserError(f"sample_every must be an integer >= 0, got {cfg.sample_every!r}")
    if cfg.objective == "shortcut" and cfg.batch_size < cfg.bootstrap_every:
        raise UserError(f"batch_size {cfg.batch_size} is smaller than bootstrap_every {cfg.bootstrap_every}: no self-consistency rows")
