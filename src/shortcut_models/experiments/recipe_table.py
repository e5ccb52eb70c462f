"""The study report's "Recipes" section: each method's own recipe, read from its objective's defaults (never
written by hand), with where those defaults come from, and what the common recipe changes of it.

A method's own recipe is what its "own" runs train with: the digits-uncond preset names no objective knob
(tests/config/test_preset_knobs.py), so every knob is at its objective's default. The five settings shown are
the time sampler, the loss weight, the network that builds the targets, what the network's step-size embedder
sees (level: -log2 d; size: d itself) and the probability of the null label; the source is the objective's
``recipe_source``.
"""

from __future__ import annotations

from typing import Any

from ..config import parse_value
from ..objectives import OBJECTIVES, build_objective
from .study_plan import RECIPE_TEXT, RECIPES, StudyPlan, method_title

COLUMNS = ("time sampler", "loss weight", "target network", "step-size input", "label dropout")
STEP_INPUTS = {"level": "level (-log2 d)", "size": "size (d)"}
NETWORKS = {"ema": "EMA", "online": "online", None: "none (no network builds targets)"}


def recipe_cells(args: dict[str, Any], step_input: str) -> dict[str, str]:
    """The five settings of a method's recipe, as the table writes them, from its knobs ``args`` (every knob,
    defaults included) and its step-size input."""
    sampler = args["time_sampler"]
    if sampler == "logit-normal":  # sigmoid(mu + sigma n), t = 0 noise
        sampler += f" (mu {args['time_mu']:g}, sigma {args['time_sigma']:g})"
    weight = args["loss_weight"]
    if weight == "adaptive":
        weight += f" (p {args['adaptive_power']:g}, eps {args['adaptive_eps']:g})"
    elif weight == "pseudo-huber":
        weight += f" (c {args['huber_c']:g})"
    network = NETWORKS[args.get("target_network")]
    if args.get("target_clamp"):
        network += f", targets bounded by {args['target_clamp']:g}"
    dropout = f"{args['class_dropout']:g}" if "class_dropout" in args else "none (true labels)"
    return dict(zip(COLUMNS, (sampler, weight, network, STEP_INPUTS[step_input], dropout)))


def method_cells(method: str, recipe: str = "own") -> dict[str, str]:
    """The settings of ``method`` under ``recipe`` (a key of RECIPES): its objective's defaults, changed by the
    recipe's overrides that are knobs of it."""
    overrides = dict(item.split("=", 1) for item in RECIPES[recipe])
    objective = build_objective(method, 0, {k: parse_value(v) for k, v in overrides.items()})
    return recipe_cells(objective.args(), OBJECTIVES[method].step_input)


def recipe_rows(methods) -> list[str]:
    """The Markdown table: one row per method, its own recipe and its source."""
    lines = ["| method | " + " | ".join(COLUMNS) + " | source |", "|---" * (len(COLUMNS) + 2) + "|"]
    for m in methods:
        cells = " | ".join(method_cells(m).values())
        lines.append(f"| {method_title(m)} | {cells} | {OBJECTIVES[m].recipe_source or 'not declared'} |")
    return lines


def common_changes(methods) -> str:
    """One line: what the common recipe changes of each method's own (the settings that differ)."""
    parts = []
    for m in methods:
        own, common = method_cells(m), method_cells(m, "common")
        changed = [c for c in COLUMNS if own[c] != common[c]]
        parts.append(f"{method_title(m)}: {', '.join(changed) if changed else 'nothing'}")
    return f"The common recipe ({RECIPE_TEXT['common']}) changes, of each method's own: {'; '.join(parts)}."


def recipes_section(plan: StudyPlan) -> list[str]:
    """Each method's own recipe with its source, and what the common recipe changes for the methods run under it."""
    lines = [
        f"Own recipe: {RECIPE_TEXT['own']}, as its objective's defaults (the digits-uncond preset changes none): "
        "the time sampler (t = 0 noise), the loss weight, the network that builds the targets, the network's "
        "step-size input and the probability of the null label (unconditional digits have no labels to drop).",
        "",
        *recipe_rows(plan.methods),
    ]
    if "common" in plan.recipes:
        common = [m for m in plan.methods if not plan.common_methods or m in plan.common_methods]
        lines += ["", common_changes(common)]
    return lines
