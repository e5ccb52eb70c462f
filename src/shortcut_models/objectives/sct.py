"""sCT, continuous-time consistency training (Lu & Song, 2025, "Simplifying, Stabilizing and Scaling
Continuous-Time Consistency Models"), on the straight path as ESC's port (``loss/scm_linear_loss.py``).

The network u(x_t, t, d) is the average velocity over [t, t + d] (t = 0 noise, t = 1 data), so the
consistency function, the jump from x_t to the data, is x_t + (1 - t) u(x_t, t, 1 - t). Continuous-time
consistency asks that jump to stay put along the path: its derivative in t (end held at 1) vanishes,
which for the average velocity is the MeanFlow identity on the interval [t, 1]:

    u(x_t, t, 1 - t) = v + (1 - t) D u,   D u = du/dx . v + du/dt - du/dd,

with v = x1 - (1 - eps) x0 the path velocity and D u one forward-mode product of the target network
(tangent (v, 1, -1), MeanFlow's, through :mod:`.forward_mode`), all without gradient. Each batch holds two kinds
of rows: on the leading ``round(B * interval_share)`` rows ("consistency") d = 1 - t and the target is
the right-hand side above; on the rest ("flow") d = 0 and the target is v (flow matching, as ESC's rows
with r = t). Times: ``time_draws`` draws of the time sampler per row, the earliest kept (ESC's port
sorts two draws and keeps the noisier one on every row).

The paper's stabilisers, as knobs:

- tangent warm-up: the derivative term is multiplied by min(1, step / derivative_warmup_steps) (the
  training step from the trainer's ``progress``; ESC's knob and schedule), so training starts as flow
  matching;
- tangent normalisation (``tangent_norm`` = c > 0): with u- the target network's own output at
  (x_t, t, 1 - t) and g = target - u- the tangent the loss follows, the target becomes
  u- + g / (rms(g) + c), rms over each row's elements (ESC's linear port has none: c = 0, the default;
  their cosine port and the paper use c = 0.1). ``target_clamp`` bounds the targets as for any objective.

Not here: the paper's learned log-variance weighting (ESC's ``variational_adaptive_weight``) needs a
second output head our networks do not have; the loss weight is a recipe knob instead (ESC's "l2" is
our "mse", the default). ESC's classifier-free guidance in training is off in their sCT run and not
ported. Sampled like MeanFlow and ESC's sampler: one step is the jump x0 + u(x0, 0, 1); N steps feed
the step actually taken (d = 1/N), a length the network saw only as the end of a jump.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import path
from ..seeding import RowDraws
from ..validation import Float, Int
from .base import Network, Objective, Progress, TargetNetworks, Targets, knob, redefault
from .esc import ESC
from .flow_matching import FlowRows
from .forward_mode import network_jvp_with_output
from .meanflow import MeanFlow
from .time_samplers import times


@dataclass(kw_only=True)
class ContinuousConsistency(MeanFlow):
    """sCT: the one-step jump u(x_t, t, 1 - t) trained by the continuous-time consistency target.

    Args:
        interval_share: share of consistency rows (d = 1 - t); the rest are flow rows (d = 0). ESC's
            ``ratio_r_not_equal_t`` in their sCT run: 0.25.
        time_draws: draws of the time sampler per row, the earliest kept (ESC's port: 2; the paper: 1).
        time_sampler, time_mu, time_sigma: logit-normal with mu = 1.0, sigma = 1.4 (ESC's sCT run:
            -1.0 and 1.4 in their reversed time).
        derivative_warmup_steps: steps over which the derivative term grows linearly to full weight
            (0: none; ESC's knob, here at the sCT default 10000).
        tangent_norm: c of the tangent normalisation g / (rms(g) + c) (0: off, as ESC's linear port).
        target_network: the network whose derivative builds the target: "online" (ESC's target
            network follows the online weights exactly).
        loss_weight: "mse" (ESC's "l2").
        class_dropout: label dropout 0.1 (ESC's cfg-prob, their loss's label_dropout_prob).
    """

    time_draws: int = knob(2, Int(1, 2), "time draws per row, the earliest kept (ESC's port: 2, the paper: 1)")
    derivative_warmup_steps: int = redefault(ESC, "derivative_warmup_steps", 10000)
    tangent_norm: float = knob(0.0, Float(0.0), "tangent normalisation c of g / (rms(g) + c) (0: off)")
    class_dropout: float = redefault(FlowRows, "class_dropout", 0.1)
    time_mu: float = redefault(Objective, "time_mu", 1.0)
    time_sigma: float = redefault(Objective, "time_sigma", 1.4)
    loss_weight: str = redefault(Objective, "loss_weight", "mse")

    name = "sct"
    title = "sCT (continuous-time consistency)"
    row_kinds = ("consistency", "flow")
    # MeanFlow's time of its d = 0 rows: sCT draws its own times (``time_draws``), so it has no such choice
    unused_knobs = ("flow_row_time",)

    derivative_weight = ESC.derivative_weight  # min(1, step / derivative_warmup_steps); 1 without warm-up

    def build_targets(
        self,
        networks: TargetNetworks,
        x0: torch.Tensor,
        x1: torch.Tensor,
        y: torch.Tensor | None,
        draws: RowDraws,
        progress: Progress,
    ) -> Targets:
        """Draw order after the noise: ``time_draws`` times per row, label dropout."""
        n = len(draws.head(self.kind_rows(draws.total)[0]))  # this process's consistency rows
        t = times(self, draws, self.max_steps)
        for _ in range(self.time_draws - 1):
            t = torch.minimum(t, times(self, draws, self.max_steps))
        labels = self.dropped_labels(y, draws)
        consistency = torch.arange(len(draws), device=t.device) < n
        d = torch.where(consistency, 1 - t, torch.zeros_like(t))
        x_t, v = path.interpolate(x0, x1, t), path.velocity(x0, x1)
        target = v.clone()
        if n:
            net = self.target_net(networks)
            jump = self.consistency_target(net, x_t[:n], t[:n], v[:n], labels[:n], self.derivative_weight(progress))
            target[:n] = self.clamp_target(jump)
        return Targets(x_t, t, d, target, labels, (~consistency).long())

    def consistency_target(
        self, model: Network, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor, y: torch.Tensor, weight: float
    ) -> torch.Tensor:
        """v + weight (1 - t) D u at (x_t, t, d = 1 - t), tangent-normalised when ``tangent_norm`` > 0."""
        d = 1 - t
        u, du = network_jvp_with_output(model, (x_t, t, d, y), (v, torch.ones_like(t), -torch.ones_like(d)))
        target = v + weight * path.expand_like(d, v) * du
        if self.tangent_norm > 0:
            g = target - u
            rms = g.flatten(1).pow(2).mean(dim=1).sqrt()
            target = u + g / path.expand_like(rms + self.tangent_norm, g)
        return target.detach()
