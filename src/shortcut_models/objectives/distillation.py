"""What the methods that distil a flow-matching run share: their knobs, checks and cost model."""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import Float, Text
from .base import knob
from .target_networks import TargetNetworkKnobs


@dataclass(kw_only=True)
class FlowTeacherDistillation(TargetNetworkKnobs):
    """The knobs and checks of the methods that distil a flow-matching run (``teacher=RUN``).

    Args:
        teacher: the flow-matching run (or checkpoint) to distil; required for training. The trainer
            loads it and hands it over as ``TargetNetworks.teacher``.
        target_network: where the student stands in for the teacher, its EMA ("ema", the authors') or
            its online network.
        max_steps: M, the finest step count: the teacher steps by 1/M.
        clip: bound on the points the teacher steps to (4).

    The cost model: two teacher forwards per row, then the student's forward and backward.
    """

    teacher: str = knob("", Text("required for training"), "the flow-matching run or checkpoint to distil")
    clip: float = knob(4.0, Float(0.0, low_open=True), "bound on the points the teacher steps to")

    teacher_run = True

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """Two teacher forwards per row, then one forward and backward."""
        return 3.0, 1.0
