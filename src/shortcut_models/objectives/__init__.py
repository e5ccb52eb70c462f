"""Training objectives on one interface (:class:`Objective`), the recipe they are trained with, and the registry.

``targets(networks, x1, y, generator, progress) -> Targets`` builds a batch without gradient from the
networks handed over (:class:`TargetNetworks`) and the training progress (:class:`Progress`);
``loss(model, targets) -> (loss, logs)`` weighs each row's squared error by the recipe's loss weight.

Each method is one file here, read top to bottom: what it is (its name, its kinds of rows, what the
study needs to know of it), its knobs with their defaults (its :class:`Recipe`: time sampler, loss
weight, target network; then its own), then its maths. Adding an objective: write one such file and
add one line to :data:`OBJECTIVES`. The configuration, the command line, the trainer, sampling,
evaluation, the study and the docs' list of objectives read their choices and knobs from this registry.
"""

from __future__ import annotations

from typing import Any

from .alpha_flow import AlphaFlow
from .base import Objective, kind_counts, log_weights
from .batch import Batch, Progress, TargetNetworks, Targets
from .consistency_distillation import ConsistencyDistillation
from .consistency_training import ConsistencyTraining
from .decoupled_meanflow import DecoupledMeanFlow
from .esc import ESC
from .flow_matching import FlowMatching
from .imf import ImprovedMeanFlow
from .imm import IMM
from .live_reflow import LiveReflow
from .loss_weights import LOSS_WEIGHTS
from .meanflow import MeanFlow
from .progressive_distillation import ProgressiveDistillation
from .recipe import TARGET_NETWORKS, Recipe
from .sct import ContinuousConsistency
from .shortcut import Shortcut, level_strata
from .soflow import SoFlow
from .time_samplers import TIME_SAMPLERS

OBJECTIVES: dict[str, type[Objective]] = {
    FlowMatching.name: FlowMatching,
    Shortcut.name: Shortcut,
    ConsistencyTraining.name: ConsistencyTraining,
    ConsistencyDistillation.name: ConsistencyDistillation,
    ProgressiveDistillation.name: ProgressiveDistillation,
    LiveReflow.name: LiveReflow,
    MeanFlow.name: MeanFlow,
    ESC.name: ESC,
    ImprovedMeanFlow.name: ImprovedMeanFlow,
    IMM.name: IMM,
    ContinuousConsistency.name: ContinuousConsistency,
    DecoupledMeanFlow.name: DecoupledMeanFlow,
    SoFlow.name: SoFlow,
    AlphaFlow.name: AlphaFlow,
}


def all_knobs() -> dict[str, tuple[str, ...]]:
    """Every knob name of a registered objective -> the objectives that have it."""
    found: dict[str, tuple[str, ...]] = {}
    for name, cls in OBJECTIVES.items():
        for knob in cls.knobs():
            found[knob] = (*found.get(knob, ()), name)
    return found


def registry_table() -> str:
    """The registered objectives as a Markdown table, one row each (docs/architecture.md holds it; a test
    checks that it is this table): name, what it trains (the first line of its class docstring), its file,
    its kinds of rows, the network's step-size input it chooses, and whether it needs a teacher run."""
    rows = [
        "| objective | what it trains | file | kinds of rows | step input | teacher run |",
        "|---|---|---|---|---|---|",
    ]
    for name, cls in OBJECTIVES.items():
        summary = (cls.__doc__ or cls.title).strip().splitlines()[0]
        file = cls.__module__.removeprefix("shortcut_models.").replace(".", "/") + ".py"
        teacher = f"a {OBJECTIVES[cls.teacher_objective].title} run" if cls.teacher_objective else "no"
        kinds = ", ".join(cls.row_kinds)
        rows.append(f"| `{name}` | {summary} | `{file}` | {kinds} | {cls.step_input} | {teacher} |")
    return "\n".join(rows) + "\n"


def build_objective(name: str, num_classes: int, args: dict[str, Any] | None = None) -> Objective:
    """The objective ``name`` with the knobs of ``args`` that it has (knobs of other objectives are
    ignored, so one configuration can serve several objectives); ValueError on a bad name or value."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(repr(n) for n in OBJECTIVES)}, got {name!r}")
    cls = OBJECTIVES[name]
    known = all_knobs()
    unknown = sorted(set(args or {}) - set(known))
    if unknown:
        raise ValueError(f"unknown objective knob(s) {', '.join(unknown)}; knobs: {', '.join(sorted(known))}")
    own = {k: v for k, v in (args or {}).items() if k in cls.knobs()}
    return cls.from_knobs(num_classes, **own)


__all__ = [
    "LOSS_WEIGHTS",
    "AlphaFlow",
    "OBJECTIVES",
    "TARGET_NETWORKS",
    "TIME_SAMPLERS",
    "ConsistencyDistillation",
    "ConsistencyTraining",
    "Batch",
    "ContinuousConsistency",
    "DecoupledMeanFlow",
    "ESC",
    "FlowMatching",
    "ImprovedMeanFlow",
    "IMM",
    "LiveReflow",
    "MeanFlow",
    "Objective",
    "ProgressiveDistillation",
    "Progress",
    "Recipe",
    "Shortcut",
    "SoFlow",
    "TargetNetworks",
    "Targets",
    "all_knobs",
    "build_objective",
    "kind_counts",
    "level_strata",
    "log_weights",
    "registry_table",
]
