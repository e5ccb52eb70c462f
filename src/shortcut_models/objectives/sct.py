"""sCT, continuous-time consistency training (Lu & Song, 2025, "Simplifying, Stabilizing and Scaling
Continuous-Time Consistency Models"), on the straight path as ESC's port (``loss/scm_linear_loss.py``).

The network u(x_t, t, d) is the average velocity over [t, t + d] (t = 0 noise, t = 1 data), so the
consistency function, the jump from x_t to the data, is x_t + (1 - t) u(x_t, t, 1 - t). Continuous-time
consistency asks that jump to stay put along the path: its derivative in t (end held at 1) vanishes,
which for the average velocity is the MeanFlow identity on the interval [t, 1]:

    u(x_t, t, 1 - t) = v + (1 - t) D u,   D u = du/dx . v + du/dt - du/dd,

with v = x1 - (1 - eps) x0 the path velocity and D u one forward-mode product of the target network
(tangent (v, 1, -1), as :mod:`.meanflow_identity`, through :mod:`.forward_mode`), all without gradient. Each batch holds two kinds
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
from ..validation import Float, Int
from .base import Objective
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .forward_mode import network_jvp_with_output
from .knobs import knob
from .labels import dropped_labels
from .recipe import Recipe
from .schedule import warmup
from .time_samplers import times


@dataclass(kw_only=True)
class ContinuousConsistency(Objective):
    """sCT: the one-step jump u(x_t, t, 1 - t) trained by the continuous-time consistency target.

    Its recipe (ESC's sCT run): logit-normal times with mu = 1.0, sigma = 1.4 (their -1.0 and 1.4 in their
    reversed time), the mean squared error (their "l2"; ``adaptive_eps`` 0.01 only matters for another
    weight), and the online network's derivative (ESC's target network follows the online weights exactly).
    """

    name = "sct"
    title = "sCT (continuous-time consistency)"
    recipe_source = (
        'Lu and Song, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models" (2025), as '
        "ported by EDAPINENUT/ExplicitShortCut: loss/scm_linear_loss.py and scripts/run_baseline.sh (the "
        "scm-linear run: logit-normal (-1.0, 1.4) in its time, l2; tgt-decay 0: the online network)"
    )
    row_kinds = ("consistency", "flow")
    step_input = "size"  # the interval d itself, as MeanFlow's
    schedule_knob = "derivative_warmup_steps"
    ablations = {
        "no derivative warm-up": ("derivative_warmup_steps=0",),
        "MeanFlow's time sampler (0.4, 1.0)": ("time_mu=0.4", "time_sigma=1.0"),
        "one time draw per row": ("time_draws=1",),
    }

    recipe: Recipe = Recipe(
        time_sampler="logit-normal", time_mu=1.0, time_sigma=1.4, adaptive_eps=0.01, target_network="online"
    )
    # label dropout 0.1: ESC's cfg-prob, their loss's label_dropout_prob
    class_dropout: float = knob(0.1, Float(0.0, 1.0), "probability of the null label on flow-matching rows")
    # ESC's ratio_r_not_equal_t in their sCT run: a quarter of the rows are consistency rows (d = 1 - t)
    interval_share: float = knob(0.25, Float(0.0, 1.0), "share of rows trained on an interval (d > 0)")
    time_draws: int = knob(2, Int(1, 2), "time draws per row, the earliest kept (ESC's port: 2, the paper: 1)")
    # the tangent warm-up: ESC's knob and schedule, at the sCT default
    derivative_warmup_steps: int = knob(10000, Int(0), "steps over which the derivative term grows to full (0: none)")
    tangent_norm: float = knob(0.0, Float(0.0), "tangent normalisation c of g / (rms(g) + c) (0: off)")

    def kind_rows(self, batch: int) -> tuple[int, ...]:
        """(consistency rows, the leading round(B * interval_share), which need the product; flow rows)."""
        n = round(batch * self.interval_share)
        return n, batch - n

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """One Jacobian-vector product on the consistency share f (primal plus tangent: two forwards), then
        one forward and backward per row."""
        return 1 + 2 * self.kind_rows(batch)[0] / batch, 1.0

    def derivative_weight(self, progress: Progress) -> float:
        """The tangent warm-up: min(1, step / derivative_warmup_steps), 1 without warm-up."""
        return warmup(progress.step, self.derivative_warmup_steps)

    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Draw order after the noise: ``time_draws`` times per row, label dropout."""
        draws = batch.draws
        n = len(batch.kinds[0])  # the consistency rows
        t = times(self.recipe, draws, self.max_steps)
        for _ in range(self.time_draws - 1):
            t = torch.minimum(t, times(self.recipe, draws, self.max_steps))
        labels = dropped_labels(batch.y, draws, self.class_dropout, self.num_classes)
        consistency = torch.arange(len(draws), device=t.device) < n
        d = torch.where(consistency, 1 - t, torch.zeros_like(t))
        x_t, v = path.interpolate(batch.x0, batch.x1, t), path.velocity(batch.x0, batch.x1)
        target = v.clone()
        if n:
            net = self.recipe.target_net(networks)
            jump = self.consistency_target(net, x_t[:n], t[:n], v[:n], labels[:n], self.derivative_weight(progress))
            target[:n] = self.recipe.clamp(jump)
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
