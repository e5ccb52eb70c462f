"""The shortcut-model objective (Frans et al., ICLR 2025), as in the authors' code.

A batch of B rows is split into ``B_b = B // bootstrap_every`` self-consistency rows (the first B_b
rows, kind 0) and ``B - B_b`` flow-matching rows (kind 1). Row i of the targets is
built from data row i (the authors reuse the first B_b images twice; we use disjoint rows).

Self-consistency rows, with M = max_steps and K = log2 M:

1. Levels k (step size d = 2^-k) in strata: K-1, K-2, ..., 0 each repeated B_b // K times, the rest
   k = 0. ``dt_bias=True`` is the authors' variant: levels K-1..2 each (B_b // 2) // K times, then
   B_b // 4 rows at k = 1, and k = 0 for the rest. When B_b < K the strata would put every row at
   k = 0 (the authors' pitfall); here levels are then drawn uniformly from {0, ..., K-1} instead.
2. t = i d with i uniform in {0, ..., 2^k - 1} (the grid time sampler; a continuous sampler's t is
   scaled to [0, 1 - d]).
3. With d_half = d / 2 and the teacher s (``target_network``: the EMA network by default):
   v1 = s(x_t, t, d_half, y); x' = clip(x_t + d_half v1, -clip, clip); v2 = s(x', t + d_half, d_half, y);
   target = clip((v1 + v2) / 2, -target_clamp, target_clamp), with clip = target_clamp = 4.
4. Labels are the true labels (no dropout). With ``bootstrap_cfg``, rows at level K-1 (teacher at the
   flow level K) use guided teacher velocities v_u + w (v_c - v_u), w = ``cfg_scale``, in both calls.

Flow rows are flow matching's (:func:`~.flow_matching.flow_rows`: t from the time sampler, d = 1/M,
label dropout).
The paper's text uses a quarter of the batch for self-consistency (bootstrap_every = 4); the
authors' code uses an eighth (bootstrap_every = 8, the default here).

Several processes: each builds the rows it holds of the global batch, and runs the teacher on its own
self-consistency rows only. B_b, the level strata and the small-batch rule are those of the global
batch (the strata are dealt out by :meth:`~shortcut_models.seeding.RowDraws.from_whole`); every random
draw is made per global row, so the union of the processes' targets is the single-process batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch

from .. import path
from ..runtime import to_device
from ..seeding import RowDraws
from ..validation import Flag, Float, Int
from .base import Objective, leading_rows
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .fixed_conditioning import Call, calls_at, velocities_at
from .flow_matching import flow_rows
from .knobs import knob
from .labels import class_labels, null_labels
from .recipe import LOGIT_NORMAL_TIMES, Recipe
from .schedule import num_levels, two_half_steps
from .time_samplers import start_times


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


@dataclass(kw_only=True)
class Shortcut(Objective):
    """Shortcut models: flow matching plus the self-consistency of two half steps, across step sizes.

    See the module docstring for the maths and the authors' settings.
    """

    name = "shortcut"
    title = "shortcut"
    recipe_source = (
        'Frans et al., "One-Step Diffusion via Shortcut Models" (ICLR 2025); kvfrans/shortcut-models: '
        "targets_shortcut.py (bootstrap_ema=1: the EMA network; targets clipped to 4) and train.py (its label "
        "dropout 0.1 is named here by the presets with labels)"
    )
    row_kinds = ("self_consistency", "flow")
    min_max_steps = 2
    ablations = {
        "no target clamp": ("target_clamp=0",),
        "logit-normal times": LOGIT_NORMAL_TIMES,
        "one self-consistency row in 4": ("bootstrap_every=4",),
    }

    # grid times, mean squared error; the EMA network builds the self-consistency targets, clamped to 4
    recipe: Recipe = Recipe(target_network="ema", target_clamp=4.0)
    class_dropout: float = knob(0.0, Float(0.0, 1.0), "probability of the null label on flow-matching rows")
    bootstrap_every: int = knob(8, Int(1), "one self-consistency row in this many (authors' code 8, paper 4)")
    bootstrap_cfg: bool = knob(False, Flag(), "guided teacher at the finest self-consistency level")
    cfg_scale: float = knob(1.0, Float(), "guidance weight of bootstrap_cfg")
    dt_bias: bool = knob(False, Flag(), "the authors' level schedule with more rows at large steps")
    clip: float = knob(4.0, Float(0.0, low_open=True), "bound on the teacher's midpoint")

    def kind_rows(self, batch: int) -> tuple[int, ...]:
        """(self-consistency rows B_b = B // bootstrap_every, flow rows B - B_b)."""
        n = leading_rows(batch, self.bootstrap_every, "self-consistency")
        return n, batch - n

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """Two teacher forwards on the self-consistency share f, then one forward and backward per row."""
        return 1 + 2 * self.kind_rows(batch)[0] / batch, 1.0

    def levels(self, draws: RowDraws) -> torch.Tensor:
        """Levels of the self-consistency rows ``draws``: the strata over the batch's B_b rows, or one
        uniform draw per row when B_b < K.

        The strata are deterministic and returned on the CPU (the caller moves them without a host
        sync and reads the guided rows from them); uniform draws are made on the draws' device.
        """
        k = num_levels(self.max_steps)

        def over_the_batch(rows: RowDraws) -> torch.Tensor:
            return rows.integers(k) if len(rows) < k else level_strata(len(rows), k, self.dt_bias)

        return draws.from_whole(over_the_batch)

    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Flow rows, then the first B // bootstrap_every rows become self-consistency rows. Draw order after
        the noise: flow times, label dropout, levels (small batches only), self-consistency times."""
        boot = batch.kinds[0]
        nb, device = len(boot), batch.device
        tg = flow_rows(batch, self.recipe, self.max_steps, self.class_dropout, self.num_classes, kind=1)
        if nb == 0:
            return tg
        levels = self.levels(boot)
        # guided rows are found where the levels live (the CPU for strata: no host sync)
        guided = (levels == num_levels(self.max_steps) - 1).nonzero().squeeze(1) if self.bootstrap_cfg else None
        guided = to_device(guided, device) if guided is not None and guided.numel() else None
        levels = to_device(levels, device)
        d = torch.pow(2.0, -levels.float())
        t = start_times(self.recipe, boot, d)
        x_t = path.interpolate(batch.x0[:nb], batch.x1[:nb], t)
        labels = class_labels(None if batch.y is None else batch.y[:nb], nb, self.num_classes, device)
        v = self.teacher_target(self.recipe.target_net(networks), x_t, t, d, labels, guided)
        tg.x_t[:nb], tg.t[:nb], tg.d[:nb], tg.v[:nb], tg.y[:nb], tg.kind[:nb] = x_t, t, d, v, labels, 0
        return tg

    def teacher_target(
        self,
        teacher: Network,
        x_t: torch.Tensor,
        t: torch.Tensor,
        d: torch.Tensor,
        y: torch.Tensor,
        guided: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Two half steps of the teacher, averaged (clipped midpoint), then clamped to ``target_clamp``.

        ``guided``: int64 indices of the rows whose teacher velocities are guided (None: none).
        """
        if guided is None:
            velocities = velocities_at(teacher, y, x_t.dtype)
        else:
            velocities = partial(self._guided_velocities, teacher, y, guided)
        return self.recipe.clamp(two_half_steps(velocities, x_t, t, d, self.clip))

    def _guided_velocities(
        self,
        teacher: Network,
        y: torch.Tensor,
        guided: torch.Tensor,
        times_and_sizes: Sequence[tuple[torch.Tensor, torch.Tensor]],
    ) -> list[Call]:
        """:func:`.fixed_conditioning.velocities_at` with rows ``guided`` guided: their unguided twins (null
        labels) ride in the same calls, after the batch's rows."""
        null = null_labels(guided.numel(), self.num_classes, y.device)
        twins = [
            (torch.cat([s, s[guided]]), torch.cat([h, h[guided]]), torch.cat([y, null])) for s, h in times_and_sizes
        ]
        return [partial(self._guided_velocity, call, guided) for call in calls_at(teacher, twins)]

    def _guided_velocity(self, call: Call, guided: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The teacher's velocity on x, rows ``guided`` (indices) replaced by v_u + w (v_c - v_u) from the
        same call on x with those rows appended (``call`` holds their null labels)."""
        out = call(torch.cat([x, x[guided]])).to(x.dtype)
        v, v_uncond = out[: x.shape[0]], out[x.shape[0] :]
        v = v.clone()
        v[guided] = v_uncond + self.cfg_scale * (v[guided] - v_uncond)
        return v
