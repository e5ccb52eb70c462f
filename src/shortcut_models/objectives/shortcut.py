"""The shortcut-model objective (Frans et al., ICLR 2025), as in the authors' code.

A batch of B rows is split into ``B_b = B // bootstrap_every`` self-consistency rows (the first B_b
rows, flagged in ``Targets.bootstrap``) and ``B - B_b`` flow-matching rows. Row i of the targets is
built from data row i (the authors reuse the first B_b images twice; we use disjoint rows).

Self-consistency rows, with M = max_steps and K = log2 M:

1. Levels k (step size d = 2^-k) in strata: K-1, K-2, ..., 0 each repeated B_b // K times, the rest
   k = 0. ``dt_bias=True`` is the authors' variant: levels K-1..2 each (B_b // 2) // K times, then
   B_b // 4 rows at k = 1, and k = 0 for the rest. When B_b < K the strata would put every row at
   k = 0 (the authors' pitfall); here levels are then drawn uniformly from {0, ..., K-1} instead.
2. t = i d with i uniform in {0, ..., 2^k - 1}.
3. With d_half = d / 2 and the teacher s (the EMA network when ``bootstrap_ema``):
   v1 = s(x_t, t, d_half, y); x' = clip(x_t + d_half v1, -clip, clip); v2 = s(x', t + d_half, d_half, y);
   target = clip((v1 + v2) / 2, -clip, clip), with clip = 4.
4. Labels are the true labels (no dropout). With ``bootstrap_cfg``, rows at level K-1 (teacher at the
   flow level K) use guided teacher velocities v_u + w (v_c - v_u), w = ``cfg_scale``, in both calls.

Flow rows are those of :class:`FlowMatching` (t on the 1/M grid, d = 1/M, label dropout).
The paper's text uses a quarter of the batch for self-consistency (bootstrap_every = 4); the
authors' code uses an eighth (bootstrap_every = 8, the default here).

Several processes: with ``rows`` (a :class:`~shortcut_models.seeding.RowShare`) x1 holds some rows
of a global batch of B rows. B_b, the level strata and the small-batch rule are those of the global
batch; every random draw is made per global row (:class:`~shortcut_models.seeding.RowDraws`), and
each process runs the teacher on its own self-consistency rows only. The union of the processes'
targets is the single-process batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import path
from ..runtime import to_device
from ..seeding import RowDraws, RowShare
from ..validation import check_bool, check_float, check_int
from .base import Objective, Targets
from .flow_matching import FlowMatching, check_common, null_labels


def level_strata(n_rows: int, num_levels: int, dt_bias: bool = False) -> torch.Tensor:
    """Deterministic level assignment of the authors' code for ``n_rows >= num_levels`` rows.

    Returns int64 levels of shape [n_rows], highest level first (K-1, ..., 0, then zeros).
    """
    k = num_levels
    if not dt_bias:
        levels = torch.arange(k - 1, -1, -1).repeat_interleave(n_rows // k)
    else:
        spread = torch.arange(k - 1, 1, -1).repeat_interleave((n_rows // 2) // k)
        levels = torch.cat(
            [spread, torch.ones(n_rows // 4, dtype=torch.long), torch.zeros(n_rows // 4, dtype=torch.long)]
        )
    levels = levels[:n_rows]
    return torch.cat([levels, torch.zeros(n_rows - levels.numel(), dtype=torch.long)])


@dataclass
class Shortcut(Objective):
    """Shortcut objective: flow matching plus self-consistency across step sizes.

    Args:
        num_classes: real classes; label ``num_classes`` is the null label (0 = unconditional).
        class_dropout: label dropout probability on flow rows only.
        bootstrap_every: one self-consistency row per this many rows (8 = authors' code, 4 = paper).
        bootstrap_ema: the teacher is the EMA network (True, default) or the online network.
        bootstrap_cfg: guided teacher at level K-1 with weight ``cfg_scale`` (ImageNet setting).
        cfg_scale: guidance weight used by ``bootstrap_cfg``.
        dt_bias: the authors' biased level schedule (more rows at large steps).
        max_steps: M = 128, the finest step count; levels run from 0 (d = 1) to K = log2 M.
        clip: bound applied to the teacher's intermediate state and to the target (4).
    """

    num_classes: int = 0
    class_dropout: float = 0.0
    bootstrap_every: int = 8
    bootstrap_ema: bool = True
    bootstrap_cfg: bool = False
    cfg_scale: float = 1.0
    dt_bias: bool = False
    max_steps: int = 128
    clip: float = 4.0

    name = "shortcut"
    title = "shortcut"

    def __post_init__(self) -> None:
        check_common(self.num_classes, self.class_dropout, self.max_steps)
        check_int("bootstrap_every", self.bootstrap_every, low=1)
        for flag in ("bootstrap_ema", "bootstrap_cfg", "dt_bias"):
            check_bool(flag, getattr(self, flag))
        check_float("cfg_scale", self.cfg_scale)
        check_float("clip", self.clip, low=0.0, low_open=True)
        if self.max_steps < 2:
            raise ValueError("max_steps must be >= 2 for the shortcut objective")
        self._flow = FlowMatching(self.num_classes, self.class_dropout, self.max_steps)

    @property
    def num_levels(self) -> int:
        """K = log2 M: the flow level; self-consistency levels are 0..K-1."""
        return self.max_steps.bit_length() - 1

    @property
    def sampling_d(self) -> float | None:
        """Shortcut models are fed the step size actually taken (None: the sampler's own d)."""
        return None

    def select_teacher(self, model: nn.Module, ema_model: nn.Module) -> nn.Module:
        """The network that builds self-consistency targets: EMA if ``bootstrap_ema`` else online."""
        return ema_model if self.bootstrap_ema else model

    def teacher_rows(self, batch: int) -> int:
        """The self-consistency rows: the first B // bootstrap_every rows (see :meth:`num_bootstrap_rows`)."""
        return self.num_bootstrap_rows(batch)

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """Two teacher forwards on the self-consistency share f, then one forward and backward per row."""
        return 1 + 2 * self.num_bootstrap_rows(batch) / batch, 1.0

    def num_bootstrap_rows(self, batch: int) -> int:
        """B_b = B // bootstrap_every; a batch too small for one such row is an error."""
        n = batch // self.bootstrap_every
        if n < 1:
            raise ValueError(
                f"a batch of {batch} rows has no self-consistency row with bootstrap_every={self.bootstrap_every}; "
                f"use a batch of at least {self.bootstrap_every} rows"
            )
        return n

    def levels(self, draws: RowDraws) -> torch.Tensor:
        """Levels of the self-consistency rows ``draws`` (a batch of B_b rows): the strata, or
        uniform draws when B_b < K.

        The strata are deterministic and returned on the CPU (the caller moves them without a host
        sync and reads the guided rows from them); uniform draws are made on the draws' device.
        """
        k = self.num_levels
        if draws.total < k:
            return draws.integers(k)
        return draws.local(level_strata(draws.total, k, self.dt_bias))

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
        """Build a training batch; the first B // bootstrap_every global rows are self-consistency rows.

        ``x0`` is the noise of every row of x1 (drawn from ``generator`` when None). ``rows`` names
        the global rows x1 holds (default: the whole batch); the self-consistency rows among them
        are its first ones. Draw order: noise, flow times, label dropout, levels (small batches
        only), grid positions.
        """
        b, device = x1.shape[0], x1.device
        draws = RowDraws.for_batch(b, generator, device, rows)
        boot = draws.head(self.num_bootstrap_rows(draws.total))
        nb = len(boot)
        bootstrap = torch.arange(b, device=device) < nb
        x0 = draws.normal(tuple(x1.shape[1:]), x1.dtype) if x0 is None else x0
        tg = self._flow.flow_rows(x1, y, draws, bootstrap, x0)

        levels = self.levels(boot)
        u = boot.uniform()
        if nb == 0:
            return tg
        # guided rows are found where the levels live (the CPU for strata: no host sync)
        guided = (levels == self.num_levels - 1).nonzero().squeeze(1) if self.bootstrap_cfg else None
        guided = to_device(guided, device) if guided is not None and guided.numel() else None
        levels = to_device(levels, device)
        d = torch.pow(2.0, -levels.float())
        t = (u * torch.pow(2.0, levels.float())).floor() * d
        x_t = path.interpolate(x0[:nb], x1[:nb], t)
        labels = (
            y[:nb].to(device=device, dtype=torch.long) if y is not None else null_labels(nb, self.num_classes, device)
        )
        v = self.teacher_target(teacher, x_t, t, d, labels, guided)

        tg.x_t[:nb], tg.t[:nb], tg.d[:nb], tg.v[:nb], tg.y[:nb] = x_t, t, d, v, labels
        return tg

    def teacher_target(
        self,
        teacher: nn.Module,
        x_t: torch.Tensor,
        t: torch.Tensor,
        d: torch.Tensor,
        y: torch.Tensor,
        guided: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Two half steps of the teacher, averaged: clip((v1 + v2) / 2) with a clipped midpoint.

        ``guided``: int64 indices of the rows whose teacher velocities are guided (None: none).
        """
        half = d / 2
        v1 = self._teacher_velocity(teacher, x_t, t, half, y, guided)
        x_mid = (x_t + path.expand_like(half, x_t) * v1).clamp(-self.clip, self.clip)
        v2 = self._teacher_velocity(teacher, x_mid, t + half, half, y, guided)
        return ((v1 + v2) / 2).clamp(-self.clip, self.clip)

    def _teacher_velocity(self, teacher, x, t, d, y, guided: torch.Tensor | None) -> torch.Tensor:
        """Teacher output; rows ``guided`` (indices) get v_u + w (v_c - v_u) from one batched call."""
        if guided is None:
            return teacher(x, t, d, y).to(x.dtype)
        null = null_labels(guided.numel(), self.num_classes, x.device)
        out = teacher(
            torch.cat([x, x[guided]]), torch.cat([t, t[guided]]), torch.cat([d, d[guided]]), torch.cat([y, null])
        ).to(x.dtype)
        v, v_uncond = out[: x.shape[0]], out[x.shape[0] :]
        v = v.clone()
        v[guided] = v_uncond + self.cfg_scale * (v[guided] - v_uncond)
        return v
