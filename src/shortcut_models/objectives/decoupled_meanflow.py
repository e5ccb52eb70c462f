"""Decoupled MeanFlow (Lee, Yu and Shin, ICLR 2026, arXiv 2510.24474: "Decoupled MeanFlow: Turning Flow Models
into Flow Maps for Accelerated Sampling"; code: github.com/kyungmnlee/dmf) on the shared network.

A flow-matching network becomes a flow map without new weights: its early blocks are conditioned on the
start time t, its late blocks (and the final layer) on the end time t + d, both through its one time
embedder (the network option ``time_split``, models/dit.py and models/mlp.py; the step-size embedder is held
at 1/M, the d a flow-matching network was trained at). At d = 0 the split network computes exactly what the
flow-matching network computes, so fine-tuning starts from its velocity (``--init-from`` a flow-matching
run: the weights load as they are; the method also trains from scratch). It predicts the average velocity
u(x_t, t, d) over [t, t + d] (t = 0 noise, t = 1 data) and is trained, as MeanFlow (:mod:`.meanflow`), on
the identity

    u = V + d * D u,   D u = du/dx . V + du/dt - du/dd   (the end t + d held fixed),

in the paper's reversed time (t = 1 noise, r < t) u_tgt = v + (r - t) du/dt, with V the target velocity and
D u one forward-mode product with tangent (V, 1, -1) (:func:`.meanflow_identity.identity_target`), stopped.
In the split network the end time's tangent is 1 - 1 = 0: the late blocks' conditioning does not move.

Rows, as the official loss (loss.py, ``DMFLoss``) with its training script's settings (scripts/
train_dmf_xl_2_256.sh), in our time (t -> 1 - t, so a logit mean m there is -m here):

- flow rows (d = 0, kind "flow"): t from the recipe's time sampler, logit-normal sigmoid(0.0 + n)
  (the code's ``P_mean`` 0.0); target V;
- interval rows (kind "interval", the leading ``round(B * interval_share)`` rows): two draws from the same
  sampler with logit means ``interval_mu_start`` = -0.4 and ``interval_mu_end`` = 1.2 (the code's
  ``P_mean_t`` 0.4 and ``P_mean_r`` -1.2), t the smaller, d the gap; target V + d * D u;
- model guidance (the code's ``g_type`` "mg"): V = v + omega (u(x_t, t, 0, y) - u(x_t, t, 0, null)), the
  network's own velocities without gradient, on the rows whose label is kept and whose t lies in
  [guidance_lo, guidance_hi] (the code's ``g_min``, ``g_max`` = 0, 0.7 are [0.3, 1] here); elsewhere V = v,
  the path velocity x1 - (1 - eps) x0; omega = 0.6 (``--omega``); no guidance without labels;
- labels dropped with probability 0.1 (``cfg_prob``).

Differences from the official code, each stated: (1) it trains every image twice, a flow row and an interval
row with their own noise and times, and averages the two losses; here each row is one or the other
(``interval_share`` = 0.5: the same expected loss, at the cost of one row each); (2) its loss is
log(e^-phi |err|^2_mean + 0.01) + phi with a learned weight phi(t, r) (a linear head on the two times,
zero-initialised); there is no such head here: at phi = 0 that loss's gradient is the adaptive weight's
(p = 1) with eps = 0.01 x the elements of a row; this objective's default is the adaptive weight with
MeanFlow's eps = 0.01 (``adaptive_eps``, a knob); (3) its decoupled DiT has no step-size input; ours holds it
at 1/M (M = ``max_steps``, 128 by default for both; a run started from one trained at another M is refused,
``training/init_from.check_held_step``).

Sampling: the step actually taken, in any number of steps (the official Euler sampler, uniform steps,
``shift`` 1). The cost of a step: see :meth:`DecoupledMeanFlow.passes_per_row`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .. import path
from ..validation import Float, Int
from .base import Objective
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .knobs import knob
from .labels import dropped_labels
from .meanflow_identity import identity_target
from .recipe import Recipe
from .time_samplers import times


@dataclass(kw_only=True)
class DecoupledMeanFlow(Objective):
    """Decoupled MeanFlow: a flow-matching network split into start-time and end-time blocks, trained on the MeanFlow identity.

    Its recipe: logit-normal times (the flow rows' mean 0.0; the interval rows' pair has its own means, knobs
    below), the adaptive weight (p = 1, eps 0.01) and the online network's velocities and derivative (the
    official code's). Meant to start from a flow-matching run (``init_from``; ``starts_from``).
    """

    name = "decoupled-meanflow"
    title = "Decoupled MeanFlow"
    recipe_source = (
        'Lee, Yu and Shin, "Decoupled MeanFlow: Turning Flow Models into Flow Maps for Accelerated Sampling" '
        "(ICLR 2026); its code kyungmnlee/dmf (not among the pinned reference repositories): loss.py (DMFLoss: "
        "the online network) and scripts/train_dmf_xl_2_256.sh"
    )
    row_kinds = ("interval", "flow")
    starts_from = "flow"
    ablations = {
        "no model guidance": ("guidance_omega=0",),
        "uniform times": ("time_sampler=uniform",),
    }

    recipe: Recipe = Recipe(
        time_sampler="logit-normal", time_mu=0.0, loss_weight="adaptive", adaptive_eps=0.01, target_network="online"
    )
    class_dropout: float = knob(0.1, Float(0.0, 1.0), "probability of the null label (the code's cfg_prob)")
    interval_share: float = knob(0.5, Float(0.0, 1.0), "share of rows trained on an interval (d > 0)")
    interval_mu_start: float = knob(-0.4, Float(), "logit mean of the interval rows' first time draw")
    interval_mu_end: float = knob(1.2, Float(), "logit mean of the interval rows' second time draw")
    guidance_omega: float = knob(0.6, Float(0.0), "model guidance: omega of v + omega (v_cond - v_uncond) (0: none)")
    guidance_lo: float = knob(0.3, Float(0.0, 1.0), "model guidance applies where t >= guidance_lo")
    guidance_hi: float = knob(1.0, Float(0.0, 1.0), "model guidance applies where t <= guidance_hi")
    decoupled_depth: int = knob(-1, Int(-1), "layers fed the start time (-1: round(0.7 x depth), at most depth - 1)")

    # ------------------------------------------------------------ rows, network, cost
    def kind_rows(self, batch: int) -> tuple[int, ...]:
        """(rows with d > 0: round(B * interval_share); rows with d = 0)."""
        n = round(batch * self.interval_share)
        return n, batch - n

    def time_split(self) -> tuple[int, float] | None:
        """Its network is split after ``decoupled_depth`` layers, the step-size input held at 1/M."""
        return self.decoupled_depth, 1.0 / self.max_steps

    @property
    def guided(self) -> bool:
        """Model guidance is on: a guidance scale above 0 and labels to guide with."""
        return self.guidance_omega > 0 and self.num_classes > 0

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """Model guidance: two forwards per row (the row's label and the null label, d = 0, no gradient);
        the forward-mode product on the share f of interval rows (two forwards); one forward and backward
        per row. Guided with f = 0.5: (4, 1), 2.0x flow matching's step; unguided (1 + 2f, 1)."""
        return 1 + 2 * self.kind_rows(batch)[0] / batch + (2.0 if self.guided else 0.0), 1.0

    # ------------------------------------------------------------ targets
    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Draw order after the noise: the interval pair (two times per row), the flow rows' time, label dropout."""
        n = len(batch.kinds[0])
        t, d = self.row_times(batch)
        labels = dropped_labels(batch.y, batch.draws, self.class_dropout, self.num_classes)
        x_t = path.interpolate(batch.x0, batch.x1, t)
        net = self.recipe.target_net(networks)
        v = self.target_velocity(net, x_t, t, path.velocity(batch.x0, batch.x1), labels)
        target = v.clone()
        if n:
            target[:n] = self.recipe.clamp(identity_target(net, x_t[:n], t[:n], d[:n], v[:n], labels[:n]))
        kind = torch.ones_like(labels)
        kind[:n] = 0
        return Targets(x_t, t, d, target, labels, kind)

    def row_times(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, d) per row: on the leading interval rows the pair's smaller draw and the gap, on the flow rows
        the recipe's time and d = 0. Every row draws all three times (the pair, then the flow time)."""
        draws, cells = batch.draws, self.max_steps
        a = times(dataclasses.replace(self.recipe, time_mu=self.interval_mu_start), draws, cells)
        c = times(dataclasses.replace(self.recipe, time_mu=self.interval_mu_end), draws, cells)
        f = times(self.recipe, draws, cells)
        interval = torch.arange(len(draws), device=draws.device) < len(batch.kinds[0])
        t = torch.where(interval, torch.minimum(a, c), f)
        d = torch.where(interval, (a - c).abs(), torch.zeros_like(a))
        return t, d

    def target_velocity(
        self, net: Network, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """V: the path velocity v, plus omega (u(x_t, t, 0, y) - u(x_t, t, 0, null)) on the rows with a kept label
        and t in [guidance_lo, guidance_hi] (model guidance, when :attr:`guided`)."""
        if not self.guided:
            return v
        null = torch.full_like(labels, self.num_classes)
        zero = torch.zeros_like(t)
        both = net(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([zero, zero]), torch.cat([labels, null]))
        v_c, v_u = both.to(v.dtype).chunk(2)
        on = (labels != self.num_classes) & (t >= self.guidance_lo) & (t <= self.guidance_hi)
        return v + self.guidance_omega * path.expand_like(on.to(v.dtype), v) * (v_c - v_u)
