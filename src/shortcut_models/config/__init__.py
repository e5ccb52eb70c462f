"""Training configuration: one flat dataclass whose keys are grouped in sections, named presets, and
``key=value`` overrides.

A run is fully described by a :class:`TrainConfig` (:mod:`.train_config`); it is saved inside every
checkpoint (the ``training`` entry of config.json). ``TrainConfig()`` is valid as it stands: the embedded
default, class-conditional digits, with no objective knob set (the ``digits`` preset names the two it tunes).
Every key carries its allowed values, its meaning
and whether it may change when a run resumes; :func:`validate` applies them. Keys are grouped in
sections (data, model, objective, optim, eval, sampling, run: :mod:`.sections`) for listing, config files
and dotted overrides (``optim.lr=3e-4``); `shortcut config` prints them (:mod:`.listing`).

The objective's knobs (``bootstrap_every``, ``time_sampler``...) are defined once, on the objective
dataclasses and their recipe (``shortcut_models.objectives``), and set flat through ``objective_args``. A knob may also be
given as a top-level key (``bootstrap_every=4``): it is moved into ``objective_args``. Knobs of
objectives other than the run's are ignored, so one preset serves every objective. A knob no preset, file or
override names is at its objective's own default (its paper's recipe).
"""

from .listing import describe_config, toml_value
from .overrides import apply_overrides, build_config, load_config_file, parse_value, resolve_key
from .presets import DEFAULT_PRESET, PRESETS
from .sections import SECTIONS, flatten_sections
from .train_config import (
    EVAL_METRICS,
    MAX_LR,
    PRECISIONS,
    RESUMABLE_KEYS,
    STEP_INPUT,
    TrainConfig,
    normalise_keys,
    validate,
)

__all__ = [
    "DEFAULT_PRESET",
    "EVAL_METRICS",
    "MAX_LR",
    "PRECISIONS",
    "PRESETS",
    "RESUMABLE_KEYS",
    "SECTIONS",
    "STEP_INPUT",
    "TrainConfig",
    "apply_overrides",
    "build_config",
    "describe_config",
    "flatten_sections",
    "load_config_file",
    "normalise_keys",
    "parse_value",
    "resolve_key",
    "toml_value",
    "validate",
]
