"""The sections the configuration keys are grouped in (how `shortcut config` lists them, how a config file
may group them, and the prefixes of dotted overrides such as ``optim.lr=3e-4``). The keys stay flat in a
:class:`~.train_config.TrainConfig` and in checkpoints: a section is a name for a group, nothing more."""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..objectives import all_knobs

# section -> its keys, in the order `shortcut config` lists them; every key is in exactly one section
SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("data", "class_conditional"),
    "model": ("model", "model_args", "precision", "compile"),
    "objective": ("objective", "objective_args", "init_from"),
    "optim": (
        "steps",
        "batch_size",
        "optimizer",
        "lr",
        "weight_decay",
        "beta1",
        "beta2",
        "momentum",
        "warmup_steps",
        "lr_schedule",
        "lr_min",
        "decay_share",
        "grad_clip",
        "ema_decay",
        "ema_warmup",
        "grad_accum",
        "batch_per_gpu",
    ),
    "eval": (
        "eval_every",
        "eval_steps",
        "eval_num",
        "eval_metric",
        "eval_ref_stats",
        "eval_inception_weights",
        "eval_dinov2_weights",
        "eval_cfg_scale",
    ),
    "sampling": ("sample_every", "sample_steps", "sample_cfg_scale"),
    "run": ("preset", "seed", "device", "logger", "log_every", "ckpt_every", "keep_checkpoints"),
}
OBJECTIVE_SECTION = "objective"  # also holds the objective's knobs (objective.KNOB)


def section_key(section: str, key: str) -> str:
    """The flat key that ``section.key`` names (an objective knob stays its own name); UserError otherwise."""
    if key in SECTIONS[section] or (section == OBJECTIVE_SECTION and key in all_knobs()):
        return key
    known = list(SECTIONS[section]) + (["any objective knob"] if section == OBJECTIVE_SECTION else [])
    raise UserError(f"unknown key {key!r} in section [{section}]; its keys: {', '.join(known)}")


def flatten_sections(values: dict[str, Any]) -> dict[str, Any]:
    """Flat keys from a table that may group keys in sections (a config file's ``[optim]`` table): a
    section name holding a table is replaced by its keys; other keys are kept as they are."""
    flat: dict[str, Any] = {}
    for name, value in values.items():
        if name in SECTIONS and isinstance(value, dict):
            for key, inner in value.items():
                flat[section_key(name, key)] = inner
        else:
            flat[name] = value
    return flat
