"""Live reflow, the baseline of the paper's Table 1 as in the authors' code.

Flow matching on most rows, plus B // bootstrap_every *reflow* rows (the first rows, flagged in
``Targets.bootstrap``) that teach the network the one-step jump (d = 1) along the straight line
between a noise vector and where the network itself currently takes it:

1. From noise x0 at t = 0, 8 Euler steps of 1/8 with the online network at the flow level d = 1/M
   (null labels; with ``cfg_scale`` != 0 and labels, guided: v_u + w (v_c - v_u)) give x1_hat.
2. The row is the flow-matching row of the pair (x0, x1_hat): t = i/M with i uniform in
   {0, ..., M - 1}, x_t = (1 - (1 - eps) t) x0 + t x1_hat, target x1_hat - x0, d = 1, true labels.

Flow rows are those of :class:`FlowMatching` (t on the 1/M grid, d = 1/M, label dropout). Row i of
the targets is built from data row i (the reflow rows ignore their data). The network is sampled
with d = 1 as its step-size input below M steps and with d = 1/M at M steps, as in the authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import path
from ..seeding import RowDraws, RowShare
from ..validation import check_float, check_int
from .base import Objective, Targets, regression_loss
from .flow_matching import FlowMatching, check_common, null_labels

EULER_STEPS = 8  # the teacher's steps from noise to data, as in the authors' code


@dataclass
class LiveReflow(Objective):
    """Flow matching plus reflow rows from the network's own 8-step samples.

    Args:
        num_classes: real classes; label ``num_classes`` is the null label (0 = unconditional).
        class_dropout: label dropout probability on flow rows only.
        bootstrap_every: one reflow row per this many rows (8 = authors' code).
        cfg_scale: guidance weight of the teacher's samples (0 = unguided, null labels).
        max_steps: M; flow rows use d = 1/M.
    """

    num_classes: int = 0
    class_dropout: float = 0.0
    bootstrap_every: int = 8
    cfg_scale: float = 0.0
    max_steps: int = 128

    name = "live-reflow"
    title = "live reflow"

    def __post_init__(self) -> None:
        check_common(self.num_classes, self.class_dropout, self.max_steps)
        check_int("bootstrap_every", self.bootstrap_every, low=1)
        check_float("cfg_scale", self.cfg_scale)
        self._flow = FlowMatching(self.num_classes, self.class_dropout, self.max_steps)

    @property
    def sampling_d(self) -> float | None:
        """The reflow rows train the one-step jump at d = 1: the sampler feeds d = 1 (below M steps)."""
        return 1.0

    def sampling_d_at(self, steps: int) -> float | None:
        """d = 1 below M steps, the flow level 1/M at M steps (as the authors' evaluation)."""
        return 1.0 / self.max_steps if steps >= self.max_steps else 1.0

    def select_teacher(self, model: nn.Module, ema_model: nn.Module) -> nn.Module:
        """The online network (as the authors' code)."""
        return model

    def teacher_rows(self, batch: int) -> int:
        """The reflow rows: the first B // bootstrap_every rows (at least one)."""
        n = batch // self.bootstrap_every
        if n < 1:
            raise ValueError(
                f"a batch of {batch} rows has no reflow row with bootstrap_every={self.bootstrap_every}; "
                f"use a batch of at least {self.bootstrap_every} rows"
            )
        return n

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """Eight teacher forwards on the reflow share f, then one forward and backward per row."""
        return 1 + EULER_STEPS * self.teacher_rows(batch) / batch, 1.0

    @torch.no_grad()
    def targets(
        self,
        teacher: nn.Module,
        x1: torch.Tensor,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        x0: torch.Tensor | None = None,
        rows: RowShare | None = None,
    ) -> Targets:
        """Flow rows, then the reflow rows overwrite the first ones. Draw order: noise, flow times,
        label dropout, reflow times."""
        b, device = x1.shape[0], x1.device
        draws = RowDraws.for_batch(b, generator, device, rows)
        head = draws.head(self.teacher_rows(draws.total))
        nr = len(head)
        bootstrap = torch.arange(b, device=device) < nr
        x0 = draws.normal(tuple(x1.shape[1:]), x1.dtype) if x0 is None else x0
        tg = self._flow.flow_rows(x1, y, draws, bootstrap, x0)
        t = head.integers(self.max_steps).float() / self.max_steps
        if nr == 0:
            return tg
        labels = null_labels(nr, self.num_classes, device) if y is None else y[:nr].to(device=device, dtype=torch.long)
        x_t, v = self.reflow_rows(teacher, x0[:nr], t, labels)
        tg.x_t[:nr], tg.t[:nr], tg.d[:nr], tg.v[:nr], tg.y[:nr] = x_t, t, torch.ones_like(t), v, labels
        return tg

    def reflow_rows(
        self, teacher: nn.Module, x0: torch.Tensor, t: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, target) of reflow rows from noise ``x0``, times ``t`` and labels ``y``."""
        n = x0.shape[0]
        null = null_labels(n, self.num_classes, x0.device)
        guided = self.cfg_scale != 0 and self.num_classes > 0
        d = torch.full((2 * n if guided else n,), 1.0 / self.max_steps, device=x0.device)
        x = x0
        for i in range(EULER_STEPS):
            s = torch.full_like(d, i / EULER_STEPS)
            if guided:
                v_c, v_u = teacher(torch.cat([x, x]), s, d, torch.cat([y, null])).to(x0.dtype).chunk(2)
                v = v_u + self.cfg_scale * (v_c - v_u)
            else:
                v = teacher(x, s, d, null).to(x0.dtype)
            x = x + v / EULER_STEPS
        return path.interpolate(x0, x, t), x - x0

    def loss(self, model: nn.Module, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MSE over the batch; ``loss_consistency`` is the reflow rows' part."""
        return regression_loss(model, targets)
