"""Training objectives on one interface (:class:`Objective`), and the registry of their names.

``targets(teacher, x1, y, generator) -> Targets`` builds a batch without gradient;
``loss(model, targets) -> (loss, logs)`` is the mean squared error over every element.

Adding an objective: write one file here with a dataclass that subclasses :class:`Objective`, and add
one line to :data:`OBJECTIVES`. The configuration, the command line, the trainer and the demo read
their choices and knobs from this registry.
"""

from __future__ import annotations

from typing import Any

from .base import Objective, Targets, log_weights, regression_loss
from .consistency_distillation import ConsistencyDistillation
from .consistency_training import ConsistencyTraining
from .flow_matching import FlowMatching
from .live_reflow import LiveReflow
from .meanflow import MeanFlow
from .progressive_distillation import ProgressiveDistillation
from .shortcut import Shortcut, level_strata

OBJECTIVES: dict[str, type[Objective]] = {
    FlowMatching.name: FlowMatching,
    Shortcut.name: Shortcut,
    ConsistencyTraining.name: ConsistencyTraining,
    ConsistencyDistillation.name: ConsistencyDistillation,
    ProgressiveDistillation.name: ProgressiveDistillation,
    LiveReflow.name: LiveReflow,
    MeanFlow.name: MeanFlow,
}


def all_knobs() -> dict[str, tuple[str, ...]]:
    """Every knob name of a registered objective -> the objectives that have it."""
    found: dict[str, tuple[str, ...]] = {}
    for name, cls in OBJECTIVES.items():
        for knob in cls.knobs():
            found[knob] = (*found.get(knob, ()), name)
    return found


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
    return cls(num_classes=num_classes, **own)


__all__ = [
    "OBJECTIVES",
    "ConsistencyDistillation",
    "ConsistencyTraining",
    "FlowMatching",
    "LiveReflow",
    "MeanFlow",
    "Objective",
    "ProgressiveDistillation",
    "Shortcut",
    "Targets",
    "all_knobs",
    "build_objective",
    "level_strata",
    "log_weights",
    "regression_loss",
]
