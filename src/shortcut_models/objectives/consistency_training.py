"""Consistency training, the baseline of the paper's Table 1 as in the authors' code.

No teacher run: the targets come from the network itself (``target_network``: its EMA by default). The step
size follows a curriculum over training: the run is cut into K = log2 M equal sections and in section
k every row has level k, d = 2^-k (d = 1 first, d = 2/M last). Each row:

1. t = i d with i uniform in {0, ..., 2^k - 1} (grid time sampler; a continuous one is scaled to
   [0, 1 - d]); x_t and x_{t+d} lie on the path of the same noise.
2. v' = s(x_{t+d}, t + d, d, y) with s the teacher; x1_hat = x_{t+d} + (1 - t - d) v'.
3. target = (x1_hat - x_t) / (1 - t): the straight jump from x_t to the data the teacher predicts.

The network is trained at (x_t, t, d) and sampled with the step size actually taken. Labels are the
true labels (no dropout). Every row is built with the teacher. The level follows from the training
progress handed to :meth:`~.base.Objective.targets`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import path
from ..seeding import RowDraws
from .base import Network, Progress, TargetNetworks, Targets
from .schedule import consistency_velocity, num_levels, section
from .target_networks import TargetNetworkKnobs
from .time_samplers import start_times


@dataclass(kw_only=True)
class ConsistencyTraining(TargetNetworkKnobs):
    """Consistency training with the authors' step-size curriculum.

    Args:
        target_network: the network that predicts the data from the later point: "ema" (authors) or "online".
        max_steps: M, the finest step count; the curriculum runs through levels 0..K-1, K = log2 M.
    """

    name = "consistency-training"
    title = "consistency training"
    row_kinds = ("consistency",)
    min_max_steps = 2

    def level(self, progress: Progress) -> int:
        """Level of the curriculum at ``progress``: k = floor(step / (total / K))."""
        return section(progress.step, progress.total, num_levels(self.max_steps))

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """One teacher forward per row, then one forward and backward."""
        return 2.0, 1.0

    def build_targets(
        self,
        networks: TargetNetworks,
        x0: torch.Tensor,
        x1: torch.Tensor,
        y: torch.Tensor | None,
        draws: RowDraws,
        progress: Progress,
    ) -> Targets:
        """Targets at the curriculum's level for ``progress``. Draw order after the noise: times."""
        d = 2.0 ** -self.level(progress)
        t = start_times(self, draws, d)
        return self.build(self.target_net(networks), x0, x1, t, self.labels(y, x1.shape[0], x1.device), d)

    def build(
        self, teacher: Network, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, y: torch.Tensor, d: float
    ) -> Targets:
        """Targets for given noise ``x0``, data ``x1``, times ``t``, labels ``y`` and step size ``d``."""
        d = torch.full_like(t, d)
        x_t = path.interpolate(x0, x1, t)
        x_next = path.interpolate(x0, x1, t + d)
        v_next = teacher(x_next, t + d, d, y).to(x1.dtype)
        v = self.clamp_target(consistency_velocity(x_t, t, x_next, t + d, v_next))
        return Targets(x_t, t, d, v, y, torch.zeros_like(t, dtype=torch.long))
