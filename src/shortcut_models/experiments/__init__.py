"""User-facing jobs built from the library: a training run with evaluation during training, the demo
(flow matching against shortcut models on unconditional digits), the study (every few-step method on
one network, ranked), their Markdown reports, and side-by-side step timing."""

from .demo import DemoPlan, run_demo
from .study import StudyPlan, full_plan, run_study
from .timing import interleaved_step_times, interleaved_times, median_ratio, time_train_step
from .train import build_trainer, check_config, train

__all__ = [
    "DemoPlan",
    "StudyPlan",
    "build_trainer",
    "check_config",
    "full_plan",
    "train",
    "interleaved_step_times",
    "interleaved_times",
    "median_ratio",
    "run_demo",
    "run_study",
    "time_train_step",
]
