"""Building a configuration: a preset, then a config file, then ``--objective``, then ``key=value`` overrides.

Keys are flat (``lr=3e-4``) or named with their section (``optim.lr=3e-4``, see :mod:`.sections`); a
dictionary key takes one entry (``model_args.width=512``); an objective knob is a key of its own
(``bootstrap_every=4``, ``objective.bootstrap_every=4``). A config file (JSON or TOML) may group its keys
in section tables (``[optim]``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError
from .presets import DEFAULT_PRESET, PRESETS
from .sections import SECTIONS, flatten_sections, section_key
from .train_config import TrainConfig, normalise_keys, validate


def parse_value(text: str) -> Any:
    """Parse an override value: JSON where it parses (numbers, true/false, lists, dicts), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def resolve_key(key: str) -> str:
    """The flat key an override names: ``optim.lr`` -> ``lr``, ``model.model_args.width`` ->
    ``model_args.width``, ``objective.bootstrap_every`` -> ``bootstrap_every``; others unchanged."""
    outer, dot, rest = key.partition(".")
    if not dot or outer not in SECTIONS:
        return key
    inner, deeper_dot, deeper = rest.partition(".")
    return section_key(outer, inner) + (f".{deeper}" if deeper_dot else "")


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (flat or dotted keys, see :func:`resolve_key`); ``model_args.width=512``
    sets one entry of a dict field."""
    values = json.loads(json.dumps(values))
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        key, value = resolve_key(key), parse_value(text)
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
    """Read a JSON or TOML config file (keys flat or in section tables) into a dict of flat keys."""
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
    return normalise_keys(flatten_sections(values))


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
        if resolve_key(key) == "preset":
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
