"""Flow matching, the baseline ("naive" in the authors' code).

Every row is a flow-matching row: t from the time sampler (default: the grid {0, 1/M, ..., (M-1)/M}),
the network's step size input held at d = 1/M (the finest level), target v = x1 - (1 - eps) x0.
Labels are dropped to the null label (num_classes) with probability ``class_dropout``; unconditional
data (y=None) uses the null label everywhere.

Random draws are made per global row (:class:`~shortcut_models.seeding.RowDraws`): a process
holding some rows of a global batch gets exactly the noise, times and dropouts that a single process
holding the whole batch gets for those rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import path
from ..seeding import RowDraws
from ..validation import Float
from .base import Objective, Progress, TargetNetworks, Targets, knob
from .time_samplers import times


@dataclass(kw_only=True)
class FlowRows(Objective):
    """An objective with flow-matching rows (flow matching itself, shortcut, live reflow, MeanFlow).

    Args:
        class_dropout: probability of replacing a label by the null label on flow-matching rows.
    """

    class_dropout: float = knob(0.0, Float(0.0, 1.0), "probability of the null label on flow-matching rows")

    def flow_rows(
        self, x0: torch.Tensor, x1: torch.Tensor, y: torch.Tensor | None, draws: RowDraws, kind: int
    ) -> Targets:
        """Flow rows for every row of x1, all of kind ``kind``, at d = 1/M; the objectives built on flow
        matching then overwrite their own rows. Draw order: times, label dropout."""
        t = times(self, draws, self.max_steps)
        d = torch.full((x1.shape[0],), 1.0 / self.max_steps, device=x1.device)
        labels = self.dropped_labels(y, draws)
        kinds = torch.full((x1.shape[0],), kind, dtype=torch.long, device=x1.device)
        return Targets(path.interpolate(x0, x1, t), t, d, path.velocity(x0, x1), labels, kinds)

    def dropped_labels(self, y: torch.Tensor | None, draws: RowDraws) -> torch.Tensor:
        """Labels of the draws' rows after dropout to the null label with probability ``class_dropout``."""
        labels = self.labels(y, len(draws), draws.device)
        if y is not None and self.class_dropout > 0:
            drop = draws.uniform() < self.class_dropout
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return labels


@dataclass(kw_only=True)
class FlowMatching(FlowRows):
    """Flow-matching objective on the same network interface as the shortcut objective.

    Knobs: ``class_dropout`` (:class:`FlowRows`) and those of every objective (:class:`~.base.Objective`:
    classes, M, time sampler, loss weight).
    """

    name = "flow"
    title = "flow matching"

    @property
    def sampling_d(self) -> float | None:
        """The step size a sampler feeds this objective's models: always 1/M."""
        return 1.0 / self.max_steps

    def build_targets(
        self,
        networks: TargetNetworks,
        x0: torch.Tensor,
        x1: torch.Tensor,
        y: torch.Tensor | None,
        draws: RowDraws,
        progress: Progress,
    ) -> Targets:
        """Flow-matching targets for every row (no network). Draw order after the noise: times, label dropout."""
        return self.flow_rows(x0, x1, y, draws, kind=0)
