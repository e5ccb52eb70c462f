"""User-facing jobs built from the library: a training run with evaluation during training, the demo
(flow matching against shortcut models on unconditional digits), its Markdown report, and side-by-side
step timing."""

from .demo import DemoPlan, run_demo
from .timing import interleaved_step_times, interleaved_times, median_ratio, time_train_step
from .train import build_trainer, train

__all__ = [
    "DemoPlan",
    "build_trainer",
    "train",
    "interleaved_step_times",
    "interleaved_times",
    "median_ratio",
    "run_demo",
    "time_train_step",
]
