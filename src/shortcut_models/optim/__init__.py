"""Optimisers and learning-rate schedules, each a registry of plain functions.

:data:`OPTIMIZERS` (config key ``optimizer``) maps a name to ``(params, settings, fused) -> Optimizer``;
:data:`LR_SCHEDULES` (config key ``lr_schedule``) maps a name to ``(step, total_steps, settings) -> lr``.
``settings`` is the run's configuration, read by attribute (this package sits below the configuration,
which validates its names against these registries). Adding either is one function and one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch

from .optimizers import OPTIMIZERS, OptimizerFn, OptimizerSettings
from .schedules import LR_SCHEDULES, ScheduleFn, ScheduleSettings


class OptimSettings(OptimizerSettings, ScheduleSettings, Protocol):
    """Everything :func:`build_optimizer` and :func:`learning_rate` read (``TrainConfig`` has it)."""

    optimizer: str  # a name in OPTIMIZERS
    lr_schedule: str  # a name in LR_SCHEDULES
    steps: int  # the run's total steps (the decaying schedules end there)


def build_optimizer(
    settings: OptimSettings, params: Iterable[torch.nn.Parameter], device: torch.device
) -> torch.optim.Optimizer:
    """The optimiser ``settings.optimizer`` over ``params``; fused kernels on CUDA."""
    return OPTIMIZERS[settings.optimizer](params, settings, device.type == "cuda")


def learning_rate(settings: OptimSettings, step: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) under ``settings.lr_schedule``."""
    return LR_SCHEDULES[settings.lr_schedule](step, settings.steps, settings)


__all__ = [
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "OptimSettings",
    "OptimizerFn",
    "OptimizerSettings",
    "ScheduleFn",
    "ScheduleSettings",
    "build_optimizer",
    "learning_rate",
]
