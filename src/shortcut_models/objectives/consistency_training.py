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
from .base import Objective
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .labels import class_labels
from .recipe import LOGIT_NORMAL_TIMES, Recipe
from .schedule import consistency_velocity, num_levels, section
from .time_samplers import start_times


@dataclass(kw_only=True)
class ConsistencyTraining(Objective):
    """Consistency training: the straight jump to the data its own network predicts, over a step-size curriculum.

    The curriculum runs through levels 0..K-1, K = log2 M (the authors').
    """

    name = "consistency-training"
    title = "consistency training"
    recipe_source = (
        "kvfrans/shortcut-models: baselines/targets_consistency_training.py (the shortcut paper's baseline: "
        "the EMA network predicts the data; true labels; its network ignores d, here it sees the level)"
    )
    row_kinds = ("consistency",)
    min_max_steps = 2
    schedule_spans_run = True  # the curriculum's sections are shares of the run
    ablations = {
        "logit-normal times": LOGIT_NORMAL_TIMES,
        "adaptive weight": ("loss_weight=adaptive",),
        "EMA network as target": ("target_network=ema",),
    }

    # grid times, mean squared error; the EMA network predicts the data from the later point (the authors')
    recipe: Recipe = Recipe(target_network="ema")

    def level(self, progress: Progress) -> int:
        """Level of the curriculum at ``progress``: k = floor(step / (total / K))."""
        return section(progress.step, progress.total, num_levels(self.max_steps))

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """One teacher forward per row, then one forward and backward."""
        return 2.0, 1.0

    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Targets at the curriculum's level for ``progress``. Draw order after the noise: times."""
        d = 2.0 ** -self.level(progress)
        t = start_times(self.recipe, batch.draws, d)
        labels = class_labels(batch.y, len(batch.draws), self.num_classes, batch.device)
        return self.build(self.recipe.target_net(networks), batch.x0, batch.x1, t, labels, d)

    def build(
        self, teacher: Network, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, y: torch.Tensor, d: float
    ) -> Targets:
        """Targets for given noise ``x0``, data ``x1``, times ``t``, labels ``y`` and step size ``d``."""
        d = torch.full_like(t, d)
        x_t = path.interpolate(x0, x1, t)
        x_next = path.interpolate(x0, x1, t + d)
        v_next = teacher(x_next, t + d, d, y).to(x1.dtype)
        v = self.recipe.clamp(consistency_velocity(x_t, t, x_next, t + d, v_next))
        return Targets(x_t, t, d, v, y, torch.zeros_like(t, dtype=torch.long))
