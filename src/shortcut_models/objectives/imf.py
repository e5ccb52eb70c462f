"""Improved MeanFlow (iMF, CVPR 2026, arXiv 2512.02012: "Improved Mean Flows: On the Challenges of Fastforward
Generative Models") on the shared network, with the guidance scale as a network input.

As MeanFlow (:mod:`.meanflow`), the network u(x_t, t, d) predicts the average velocity over [t, t + d]
(t = 0 noise, t = 1 data) and is trained on the identity u = V + d * D u, with two changes:

- the target velocity is *guided*: V = v + (1 - 1/w) (v_c - v_u), v the path velocity and v_c, v_u the
  network's own instantaneous velocities (d = 0) with the row's label and with the null label. Each row
  draws its guidance scale w in [1, 1 + cfg_max) (density ~ w^-cfg_beta: log-uniform at cfg_beta = 1)
  and an interval [lo, hi] of times (lo ~ U[0, 1/2), hi ~ U[1/2, 1); [0, 1] on the rows with d = 0)
  outside which its target is unguided (w = 1); the network is fed (w, lo, hi) as an input
  (``guidance=``, :mod:`shortcut_models.guidance`), so it learns the guided field and samples with one
  network pass per step whatever w;
- D u = du/dx . v_c + du/dt - du/dd moves the point with the *predicted* velocity v_c (the network's, at
  the row's guidance on [0, 1]) instead of the path velocity: the product is one forward-mode pass
  with tangent (v_c, 1, -1) (:func:`.meanflow_identity.path_derivative`; a DiT carries it through its own layers),
  on the rows with d > 0 only (the term is
  d * D u, zero where d = 0).

The official code regresses u + d * sg(D u) on V; here the target V + d * D u is built without gradient
and u regressed on it: the same loss value and gradient. Its network has an auxiliary head for v (a
second stack of blocks, dropped at inference); ours has one head, and the predicted velocity is the
network's own average velocity at d = 0, which the rows with d = 0 train (so the auxiliary v loss of the
official code has no counterpart here).

Rows, as the official code (its time reversed: t = 1 noise there): ``int(B * flow_share)`` rows of the
global batch have d = 0 (kind "flow", the trailing rows here as MeanFlow's, the leading ones there), the
others an interval (kind "interval"); every row draws two times from the time sampler (logit-normal
sigmoid(0.4 + n), the official -0.4 in its time), t is the smaller and, on interval rows, d the gap.
Label dropout as the official code: k rows are dropped, k the number of rows whose uniform draw is
below ``class_dropout``, and they are the first k rows in the official order (flow rows first, then
interval rows), so mostly rows with d = 0; a dropped row has the null label and the unguided V = v
(its tangent v_c keeps the row's own label, as there). Here row i of the batch is official row
(i - interval rows) mod B (one draw per row of the whole batch: :meth:`~shortcut_models.seeding.RowDraws.from_whole`).
Data without labels (or ``num_classes`` 0) is trained unguided (w = 1). Loss: the adaptive weight with eps 0.01 (official ``norm_eps``).

Sampling: with the step actually taken, in any number of steps; ``shortcut sample --cfg-scale W
--cfg-interval LO,HI`` feeds (W, LO, HI) in one pass per step. The official evaluation setting, w = 7.5 on
their [0.4, 0.65], is ``--cfg-scale 7.5 --cfg-interval 0.35,0.6`` in our time (t -> 1 - t).

The product as MeanFlow's (:mod:`.forward_mode`): a DiT carries the tangent through its own layers, other
networks go through ``torch.func.jvp`` with the math attention kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import guidance as guide
from .. import path
from ..seeding import RowDraws
from ..validation import Float
from .base import Objective
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .knobs import knob
from .labels import class_labels
from .meanflow_identity import path_derivative
from .recipe import Recipe
from .time_samplers import times

LOW_BOUNDS, HIGH_BOUNDS = (0.0, 0.5), (0.5, 1.0)  # lo ~ U[0, 1/2), hi ~ U[1/2, 1): the official intervals


def guidance_scales(u: torch.Tensor, cfg_max: float, cfg_beta: float) -> torch.Tensor:
    """Guidance scales w in [1, 1 + cfg_max) from uniforms ``u`` by the inverse distribution of density
    ~ w^-cfg_beta (w = (1 + cfg_max)^u at cfg_beta = 1)."""
    top = math.log1p(cfg_max)
    if cfg_beta == 1.0:
        return torch.exp(u * top)
    log_base = (1.0 - cfg_beta) * top
    return torch.exp(torch.log1p(u * math.expm1(log_base)) / (1.0 - cfg_beta))


@dataclass(kw_only=True)
class ImprovedMeanFlow(Objective):
    """iMF: MeanFlow with guided targets, the guidance scale as a network input, the predicted velocity as tangent.

    See the module docstring for the maths and the official code's settings.
    """

    name = "imf"
    title = "iMF"
    recipe_source = (
        '"Improved Mean Flows: On the Challenges of Fastforward Generative Models" (arXiv 2512.02012); '
        "Lyy-iiis/imeanflow: configs/default.py and imf.py"
    )
    row_kinds = ("interval", "flow")
    step_input = "size"  # the interval itself, as the official network embeds t - r
    guidance_input = True
    ablations = {
        "uniform times": ("time_sampler=uniform",),
        "no adaptive weight": ("loss_weight=mse",),
        "rows with d = 0: 25% (not 50%)": ("flow_share=0.25",),
    }

    # the official: logit-normal sigmoid(0.4 + n) (P_mean -0.4, P_std 1), adaptive weight p = 1, eps = 0.01
    # (norm_p, norm_eps); the online network builds the guided velocities and the product
    recipe: Recipe = Recipe(
        time_sampler="logit-normal", loss_weight="adaptive", adaptive_eps=0.01, target_network="online"
    )
    class_dropout: float = knob(0.1, Float(0.0, 1.0), "probability of the null label on flow-matching rows")
    flow_share: float = knob(0.5, Float(0.0, 1.0), "share of rows with d = 0 (official data_proportion)")
    cfg_max: float = knob(7.0, Float(0.0), "guidance scale w is drawn in [1, 1 + cfg_max)")
    cfg_beta: float = knob(1.0, Float(0.0), "density of w ~ w^-cfg_beta (1: log-uniform)")

    def kind_rows(self, batch: int) -> tuple[int, ...]:
        """(rows with an interval, which need the product; rows with d = 0: int(B * flow_share), as the
        official code)."""
        n = int(batch * self.flow_share)
        return batch - n, n

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """The guided velocities (two forwards per row, conditional and null label, batched; one when
        unconditional), the product on the interval rows (primal plus tangent), then one forward and
        backward per row."""
        guidance = 2 if self.conditional else 1
        return 1 + guidance + 2 * self.kind_rows(batch)[0] / batch, 1.0

    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Draw order after the noise: two times per row, lo, hi, the guidance scale, the label dropout."""
        draws, x0, x1 = batch.draws, batch.x0, batch.x1
        n, device = len(draws), batch.device
        interval_rows = len(batch.kinds[0])  # the rows with d > 0
        flow = torch.arange(n, device=device) >= interval_rows
        a, c = times(self.recipe, draws, self.max_steps), times(self.recipe, draws, self.max_steps)
        t = torch.minimum(a, c)
        d = torch.where(flow, torch.zeros_like(a), (a - c).abs())
        lo = torch.where(flow, 0.0, LOW_BOUNDS[0] + (LOW_BOUNDS[1] - LOW_BOUNDS[0]) * draws.uniform())
        hi = torch.where(flow, 1.0, HIGH_BOUNDS[0] + (HIGH_BOUNDS[1] - HIGH_BOUNDS[0]) * draws.uniform())
        scale = guidance_scales(draws.uniform(), self.cfg_max, self.cfg_beta)
        guided = batch.y is not None and self.conditional
        if not guided:
            scale = torch.ones_like(scale)
        labels = class_labels(batch.y, n, self.num_classes, device)
        dropped = self.dropped_rows(draws) & guided

        x_t, v = path.interpolate(x0, x1, t), path.velocity(x0, x1)
        net = self.recipe.target_net(networks)
        inside = (t >= lo) & (t <= hi)
        w = torch.where(inside, scale, torch.ones_like(scale))  # the target's scale: 1 outside the interval
        v_c, v_g = self.guided_velocity(net, x_t, t, v, labels, w, guided)
        v_g = torch.where(dropped.reshape(n, *[1] * (v.ndim - 1)), v, v_g)
        labels = torch.where(dropped, self.num_classes, labels)
        rows = guide.rows(scale, lo, hi, n, device)  # what the network is fed: the row's draws

        target = v_g.clone()
        i = interval_rows
        if i:
            du = path_derivative(net, x_t[:i], t[:i], d[:i], v_c[:i], labels[:i], guidance=rows[:i])
            target[:i] = self.recipe.clamp(v_g[:i] + path.expand_like(d[:i], v) * du)
        return Targets(x_t, t, d, target, labels, flow.long(), rows)

    def dropped_rows(self, draws: RowDraws) -> torch.Tensor:
        """[rows] bool: the first k rows of the batch in the official order (row i is official row (i - interval
        rows) mod B), k the number of rows whose uniform draw is below ``class_dropout`` (the official code's
        dropout; one draw per row of the whole batch, whichever rows are held here)."""

        def in_the_official_order(whole: RowDraws) -> torch.Tensor:
            u = whole.uniform()
            count = (u < self.class_dropout).sum()
            official = (torch.arange(len(whole), device=u.device) - self.kind_rows(len(whole))[0]) % len(whole)
            return official < count

        return draws.from_whole(in_the_official_order).to(draws.device)

    def guided_velocity(
        self,
        net: Network,
        x_t: torch.Tensor,
        t: torch.Tensor,
        v: torch.Tensor,
        labels: torch.Tensor,
        w: torch.Tensor,
        guided: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(v_c, V): the predicted velocity (d = 0, scale ``w`` on [0, 1], the row's label) and the guided
        target velocity V = v + (1 - 1/w) (v_c - v_u); unguided, V = v and only v_c is computed."""
        n = x_t.shape[0]
        cond = guide.rows(w, *guide.EVERYWHERE, n, x_t.device)
        zero = torch.zeros_like(t)
        if not guided:
            return net(x_t, t, zero, labels, guidance=cond).to(v.dtype), v
        null = torch.full_like(labels, self.num_classes)
        both = net(
            torch.cat([x_t, x_t]),
            torch.cat([t, t]),
            torch.cat([zero, zero]),
            torch.cat([labels, null]),
            guidance=torch.cat([cond, guide.none(n, x_t.device)]),
        ).to(v.dtype)
        v_c, v_u = both.chunk(2)
        return v_c, v + path.expand_like(1 - 1 / w, v) * (v_c - v_u)
