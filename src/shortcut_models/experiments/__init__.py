"""User-facing jobs built from the library: the demo (flow matching against shortcut models on
unconditional digits), its Markdown report, and side-by-side step timing."""

from .demo import DemoPlan, run_demo
from .timing import interleaved_step_times, interleaved_times, median_ratio, time_train_step

__all__ = ["DemoPlan", "interleaved_step_times", "interleaved_times", "median_ratio", "run_demo", "time_train_step"]
