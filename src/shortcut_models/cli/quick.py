"""``--quick``: the smoke-test budget ``demo`` and ``study`` share (seconds, not minutes; the numbers
their reports print are meaningless)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

QUICK_OVERRIDES = ("model=DiT-Nano", "log_every=2", "batch_size=16", "sample_steps=[1]")
"""Config overrides of every model trained: the smallest network, a small batch, one-step sample sheets."""
QUICK_STEPS = 4  # training steps of every model
QUICK_EVAL_NUM = 20  # samples per model and step count
QUICK_TIMING_REPEATS = 2


def quick_budget(overrides: Sequence[str]) -> dict[str, Any]:
    """The plan fields (DemoPlan, StudyPlan) ``--quick`` sets: the quick overrides, then the user's
    ``overrides`` (so those win), and a small evaluation and timing budget."""
    return {
        "overrides": [*QUICK_OVERRIDES, *overrides],
        "eval_num": QUICK_EVAL_NUM,
        "timing_repeats": QUICK_TIMING_REPEATS,
    }
