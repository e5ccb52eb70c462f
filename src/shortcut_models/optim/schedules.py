"""Learning-rate schedules a run may name (config key ``lr_schedule``), one pure function each.

A schedule is a function ``(step, total_steps, settings) -> lr``: the learning rate of optimizer step
``step`` (0-based, the first step is 0) of a run of ``total_steps`` steps, read from ``settings``
(:class:`ScheduleSettings`). Every schedule starts with the same linear warm-up: step s < warmup_steps
uses ``lr * (s + 1) / warmup_steps``, so step warmup_steps - 1 reaches ``lr``. After it:

- ``constant``: ``lr``;
- ``cosine``: half a cosine from ``lr`` down toward ``lr_min``;
- ``linear``: a straight line from ``lr`` down toward ``lr_min``;
- ``wsd`` (warm-up, stable, decay): ``lr`` until the last ``decay_share`` of the steps, then a straight
  line down toward ``lr_min``.

A decay runs over steps [start, total_steps) with progress p = (step - start) / (total_steps - start):
the first step of the decay uses ``lr`` and ``lr_min`` would be reached at step ``total_steps``, one
past the last step (so no step is wasted at ``lr_min = 0``). Where warm-up and decay overlap (a warm-up
longer than the stable phase) warm-up wins. Steps past the end keep the final value.

Adding a schedule is one function here and one line in :data:`LR_SCHEDULES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol


class ScheduleSettings(Protocol):
    """The configuration keys a schedule reads (``TrainConfig`` has them all)."""

    lr: float  # the peak learning rate
    warmup_steps: int  # 0 = no warm-up
    lr_min: float  # where the decaying schedules end (an absolute learning rate <= lr)
    decay_share: float  # wsd: the share of the steps spent decaying, in (0, 1]


ScheduleFn = Callable[[int, int, ScheduleSettings], float]


def warming_up(step: int, s: ScheduleSettings) -> bool:
    """Whether ``step`` lies in the warm-up."""
    return step < s.warmup_steps


def warmup(step: int, s: ScheduleSettings) -> float:
    """The warm-up's learning rate at ``step`` (``lr`` once the warm-up is over)."""
    if s.warmup_steps > 0:
        return s.lr * min(1.0, (step + 1) / s.warmup_steps)
    return s.lr


def progress(step: int, start: int, total_steps: int) -> float:
    """How far ``step`` is into a decay over [start, total_steps), in [0, 1]."""
    if total_steps <= start:
        return 0.0
    return min(1.0, max(0.0, (step - start) / (total_steps - start)))


def constant(step: int, total_steps: int, s: ScheduleSettings) -> float:  # noqa: ARG001
    """``lr`` after the warm-up (the paper's recipe, with warmup_steps=0)."""
    return warmup(step, s)


def cosine(step: int, total_steps: int, s: ScheduleSettings) -> float:
    """Half a cosine from ``lr`` down toward ``lr_min`` after the warm-up."""
    if warming_up(step, s):
        return warmup(step, s)
    p = progress(step, s.warmup_steps, total_steps)
    return s.lr_min + (s.lr - s.lr_min) * 0.5 * (1.0 + math.cos(math.pi * p))


def linear(step: int, total_steps: int, s: ScheduleSettings) -> float:
    """A straight line from ``lr`` down toward ``lr_min`` after the warm-up."""
    if warming_up(step, s):
        return warmup(step, s)
    p = progress(step, s.warmup_steps, total_steps)
    return s.lr_min + (s.lr - s.lr_min) * (1.0 - p)


def decay_start(total_steps: int, decay_share: float) -> int:
    """The first step of wsd's decay: the last ``decay_share`` of ``total_steps`` (at least one step)."""
    return total_steps - max(1, round(decay_share * total_steps))


def wsd(step: int, total_steps: int, s: ScheduleSettings) -> float:
    """Warm-up, ``lr`` while stable, then a straight line toward ``lr_min`` over the last ``decay_share``."""
    if warming_up(step, s):
        return warmup(step, s)
    p = progress(step, decay_start(total_steps, s.decay_share), total_steps)
    return s.lr_min + (s.lr - s.lr_min) * (1.0 - p)


LR_SCHEDULES: dict[str, ScheduleFn] = {
    "constant": constant,
    "cosine": cosine,
    "wsd": wsd,
    "linear": linear,
}
