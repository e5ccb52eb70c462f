"""Progressive distillation, the baseline of the paper's Table 1 as in the authors' code.

Starts from a flow-matching run (``teacher=RUN``; the student starts from its weights). The run is cut
into K = log2 M equal stages; in stage s every row has level k = K - 1 - s (d = 2/M first, d = 1 last)
and the teacher is the network the stage started with:

1. t = i d with i uniform in {0, ..., 2^k - 1} (grid time sampler; a continuous one is scaled to
   [0, 1 - d]); x_t on the path.
2. Two half steps of the teacher T at d/2: v1 = T(x_t, t, d/2), x' = clip(x_t + v1 d/2, -clip, clip),
   v2 = T(x', t + d/2, d/2).
3. target = (v1 + v2) / 2: one step of size d that lands where the teacher's two steps land.

Stage 0's teacher is the flow-matching run's network; at the start of each later stage the teacher
takes the student's weights (``target_network``: its EMA by default), so each stage halves the step
count. The stage follows from the training progress; the trainer keeps the stage's teacher
(``TargetNetworks.teacher``), copies the weights in when :meth:`teacher_refresh` says so and saves the
teacher in every checkpoint, so a resumed run continues exactly. Sampled with the step size actually
taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import path
from ..seeding import RowDraws
from .base import Network, Progress, TargetNetworks, Targets
from .distillation import FlowTeacherDistillation
from .fixed_conditioning import velocities_at
from .schedule import num_levels, section, two_half_steps
from .target_networks import TARGET_NETWORKS
from .time_samplers import start_times


@dataclass(kw_only=True)
class ProgressiveDistillation(FlowTeacherDistillation):
    """Progressive distillation of a flow-matching teacher, K stages in one run.

    Args:
        teacher: the flow-matching run (or checkpoint) that stage 0 distils; required for training.
        target_network: each later stage's teacher is the student's EMA ("ema", authors) or online network.
        max_steps: M; the first stage distils 2 teacher steps of 1/M into one of 2/M.
        clip: bound on the teacher's midpoint (4).
    """

    name = "progressive-distillation"
    title = "progressive distillation"
    row_kinds = ("distillation",)
    min_max_steps = 2

    def stage(self, progress: Progress) -> int:
        """Stage of the run at ``progress``: s = floor(step / (total / K))."""
        return section(progress.step, progress.total, num_levels(self.max_steps))

    def level(self, progress: Progress) -> int:
        """The level k = K - 1 - stage of the stage at ``progress``."""
        return num_levels(self.max_steps) - 1 - self.stage(progress)

    def teacher_refresh(self, progress: Progress) -> str | None:
        """At the first step of every stage but the first, the teacher takes the student's weights
        (the role named by ``target_network``)."""
        if progress.step == 0 or self.stage(progress) == self.stage(Progress(progress.step - 1, progress.total)):
            return None
        return TARGET_NETWORKS[self.target_network]

    def build_targets(
        self,
        networks: TargetNetworks,
        x0: torch.Tensor,
        x1: torch.Tensor,
        y: torch.Tensor | None,
        draws: RowDraws,
        progress: Progress,
    ) -> Targets:
        """Targets of the stage at ``progress`` from its teacher (``networks.teacher``). Draw order
        after the noise: times."""
        d = 2.0 ** -self.level(progress)
        t = start_times(self, draws, d)
        return self.build(networks.pick("teacher"), x0, x1, t, self.labels(y, x1.shape[0], x1.device), d)

    def build(
        self, teacher: Network, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, y: torch.Tensor, d: float
    ) -> Targets:
        """Targets for given noise, data, times, labels and step size ``d``."""
        d = torch.full_like(t, d)
        x_t = path.interpolate(x0, x1, t)
        v = self.clamp_target(two_half_steps(velocities_at(teacher, y, x1.dtype), x_t, t, d, self.clip))
        return Targets(x_t, t, d, v, y, torch.zeros_like(t, dtype=torch.long))
