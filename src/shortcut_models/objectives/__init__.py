"""Training objectives on one interface (:class:`Objective`), the recipe parts they share, and the registry.

``targets(networks, x1, y, generator, progress) -> Targets`` builds a batch without gradient from the
networks handed over (:class:`TargetNetworks`) and the training progress (:class:`Progress`);
``loss(model, targets) -> (loss, logs)`` weighs each row's squared error by the recipe's loss weight.

Recipe parts, each usable by every objective (knobs of every objective): the time sampler
(:mod:`.time_samplers`), the loss weight (:mod:`.loss_weights`) and, for objectives whose targets come
from a network, the target network and target clamp (:mod:`.target_networks`).

Adding an objective: write one file here with a dataclass that subclasses :class:`Objective`, and add
one line to :data:`OBJECTIVES`. The configuration, the command line, the trainer and the demo read
their choices and knobs from this registry.
"""

from __future__ import annotations

from typing import Any

from .base import Objective, Progress, TargetNetworks, Targets, kind_counts, log_weights
from .consistency_distillation import ConsistencyDistillation
from .consistency_training import ConsistencyTraining
from .esc import ESC
from .flow_matching import FlowMatching
from .imf import ImprovedMeanFlow
from .imm import IMM
from .live_reflow import LiveReflow
from .loss_weights import LOSS_WEIGHTS
from .meanflow import MeanFlow
from .progressive_distillation import ProgressiveDistillation
from .sct import ContinuousConsistency
from .shortcut import Shortcut, level_strata
from .target_networks import TARGET_NETWORKS
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
    IMM.name: IMM,
    ImprovedMeanFlow.name: ImprovedMeanFlow,
    ContinuousConsistency.name: ContinuousConsistency,
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
    "LOSS_WEIGHTS",
    "OBJECTIVES",
    "TARGET_NETWORKS",
    "TIME_SAMPLERS",
    "ConsistencyDistillation",
    "ConsistencyTraining",
    "ContinuousConsistency",
    "ESC",
    "FlowMatching",
    "ImprovedMeanFlow",
    "IMM",
    "LiveReflow",
    "MeanFlow",
    "Objective",
    "ProgressiveDistillation",
    "Progress",
    "Shortcut",
    "TargetNetworks",
    "Targets",
    "all_knobs",
    "build_objective",
    "kind_counts",
    "level_strata",
    "log_weights",
]
