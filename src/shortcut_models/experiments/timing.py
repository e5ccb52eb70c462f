"""Side-by-side timing of training steps (shared by benchmarks/ and the demo report).

Steps of several trainers are alternated (the order flips every round) so that machine noise hits
all of them alike; callers compare medians of per-round ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_train_step(trainer, step: int) -> float:
    """Seconds for one ``trainer.train_step(step)``, waiting for the device to finish."""
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    t0 = time.perf_counter()
    logs = trainer.train_step(step)
    float(logs["loss"])  # host sync: the step has finished
    return time.perf_counter() - t0


def interleaved_times(
    measure: dict[str, Callable[[int], float]], repeats: int, warmup: int = 3
) -> dict[str, list[float]]:
    """Seconds from each ``measure[name](round)``, called alternately (the order flips every round);
    warm-up rounds are dropped."""
    names = list(measure)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup + repeats):
        for name in names if i % 2 == 0 else reversed(names):
            dt = measure[name](i)
            if i >= warmup:
                times[name].append(dt)
    return times


def interleaved_step_times(trainers: dict, repeats: int, warmup: int = 3) -> dict[str, list[float]]:
    """Per-trainer step times (seconds), measured alternately; warm-up rounds are dropped."""
    return interleaved_times(
        {name: (lambda i, tr=tr: time_train_step(tr, i)) for name, tr in trainers.items()}, repeats, warmup
    )


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-round ratios numerator[i] / denominator[i]."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))
