"""The resolved configuration as text: every key by section, with its meaning and allowed values
(`shortcut config`). The text is a TOML file that `shortcut train --config FILE` reads back."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from ..objectives import build_objective
from .sections import OBJECTIVE_SECTION, SECTIONS
from .train_config import STEP_INPUT, TrainConfig

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_value(value: Any) -> str:
    """``value`` written as a TOML value (booleans, numbers, strings, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{k if _BARE_KEY.fullmatch(k) else json.dumps(k)} = {toml_value(v)}" for k, v in value.items()]
        return "{" + ", ".join(items) + "}" if items else "{}"
    raise TypeError(f"no TOML form for {value!r}")


def _line(key: str, value: Any, meaning: str, allowed: str) -> str:
    setting = f"{key} = {toml_value(value)}"
    return f"{setting:<40} # {meaning} ({allowed})" if meaning else f"{setting:<40} # ({allowed})"


def describe_config(cfg: TrainConfig) -> str:
    """Every key of ``cfg`` by section, then the knobs of its objective in the objective section."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    objective = build_objective(cfg.objective, 0, cfg.objective_args)
    lines = [
        f"# preset {cfg.preset}, objective {cfg.objective}: each key, its value, what it means and what it allows.",
        "# Change one with KEY=VALUE or SECTION.KEY=VALUE; `shortcut train --config FILE` reads this file.",
    ]
    for section, keys in SECTIONS.items():
        lines += ["", f"[{section}]"]
        for key in keys:
            if key == "objective_args":  # its knobs, one by one, below
                continue
            meta = fields[key].metadata
            lines.append(_line(key, getattr(cfg, key), meta["meaning"], meta["spec"].describe()))
            if key == "model_args" and STEP_INPUT not in cfg.model_args:
                lines.append(
                    f"# step_input unset: a new run takes {cfg.objective}'s, {toml_value(objective.step_input)} (a resumed run "
                    "keeps its checkpoint's, a fine-tuning run its source's); model_args.step_input=level|size sets it"
                )
        if section == OBJECTIVE_SECTION:
            lines.append(f"# the knobs of {cfg.objective} (objective_args; knobs of other objectives are ignored)")
            values = objective.args()
            for knob, (meaning, allowed) in objective.knob_docs().items():
                lines.append(_line(knob, values[knob], meaning, allowed))
    return "\n".join(lines) + "\n"
