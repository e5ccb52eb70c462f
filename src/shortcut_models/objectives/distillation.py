"""What the methods that distil a flow-matching run share: their knobs, checks and cost model."""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import check_bool, check_float
from .base import EveryRowTeacher
from .flow_matching import check_common


@dataclass
class FlowTeacherDistillation(EveryRowTeacher):
    """The knobs and checks of the methods that distil a flow-matching run (``teacher=RUN``).

    Args:
        num_classes: real classes; label ``num_classes`` is the null label (0 = unconditional).
        teacher: the flow-matching run (or checkpoint) to distil; required for training.
        bootstrap_ema: where the student stands in for the teacher, its EMA (True, authors) or its
            online network.
        max_steps: M, the finest step count: the teacher steps by 1/M.
        clip: bound on the points the teacher steps to (4).

    The cost model: two teacher forwards per row, then the student's forward and backward.
    """

    num_classes: int = 0
    teacher: str = ""
    bootstrap_ema: bool = True
    max_steps: int = 128
    clip: float = 4.0

    teacher_run = True

    def __post_init__(self) -> None:
        check_common(self.num_classes, 0.0, self.max_steps)
        check_bool("bootstrap_ema", self.bootstrap_ema)
        check_float("clip", self.clip, low=0.0, low_open=True)

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """Two teacher forwards per row, then one forward and backward."""
        return 3.0, 1.0
