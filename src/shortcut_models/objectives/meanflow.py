"""MeanFlow (Geng et al., 2025, "Mean Flows for One-step Generative Modeling") on the shared network.

The network u(x_t, t, d) predicts the *average* velocity over [t, t + d] (t = 0 noise, t = 1 data):
d u = the displacement of the flow from t to t + d, so one step of size d is x + d u, and d = 0 is
the instantaneous velocity (flow matching). Differentiating d u(x_t, t, e - t) = int_t^e v ds in t
with the end e = t + d held fixed gives the MeanFlow identity

    u = v + d * D u,   D u = (du/dt along the path, end fixed) = du/dx . v + du/dt - du/dd,

which in the paper's reversed time (t = 1 noise, interval [r, t]) reads u = v - (t - r) du/dt. The
target is v + d * D u with v = x1 - (1 - eps) x0 the path velocity and D u one forward-mode product
of the network (tangent (v, 1, -1); :mod:`.meanflow_identity`), all without gradient (stopped).

Its recipe by default (the official code's, configs/default.py of Gsunshine/meanflow, which produced
the paper's numbers): times from the pair sampler over logit-normal draws sigmoid(mu + sigma n)
(:func:`~.time_samplers.interval_times`): on the first ``round(B * interval_share)`` rows the interval
runs from the smaller draw to the larger (d > 0, these rows need the product); on the rest d = 0 at the
smaller draw (the code's ``t = max(t, r)`` before ``r = t``, in its reversed time). ``time_mu`` = 0.4
here is the code's ``P_mean`` = -0.4 (time reversed). The loss weight is the adaptive one
(:mod:`.loss_weights`) with the code's ``norm_eps`` = 0.01 added to each row's sum of squares (the
paper writes c = 1e-3 as its example), labels dropped with probability 0.1 (``class_dropout_prob``).
Any other time sampler or loss weight can be chosen. Sampled with the step size actually taken, in
any number of steps.

Not here: the official code's default trains classifier-free guidance into the target (``omega`` = 1,
``kappa`` = 0.5: v + kappa (v_cond - v_uncond) on rows whose label is kept); this objective trains
the plain velocity (the code with ``kappa`` = 0) and guides at sampling time. Its label dropout drops
each row with probability ``class_dropout`` (the code drops a leading block of as many rows, in
practice only rows with d = 0). tests/objectives/test_meanflow_reference.py compares the targets and
the loss with the official code.

Its network sees the step size as d itself by default (``step_input = "size"``: the network option
``model_args.step_input``, continuous at d = 0 where the level -log2 d sends d -> 0 far from d = 0),
as the paper's network embeds the interval; ``model_args.step_input=level`` gives the shortcut DiT's input.

The product: a DiT carries the tangent through its own layers in one pass (``DiT.jvp``); other
networks go through ``torch.func.jvp`` with the math attention kernel (:mod:`.forward_mode`). The
training forward and backward keep the fused attention kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import path
from ..validation import Float, OneOf
from .base import Objective
from .batch import Batch, Progress, TargetNetworks, Targets
from .knobs import knob
from .labels import dropped_labels
from .meanflow_identity import identity_target
from .recipe import Recipe
from .time_samplers import FLOW_ROW_TIMES, interval_times


@dataclass(kw_only=True)
class MeanFlow(Objective):
    """MeanFlow: the average velocity over intervals, its targets from the MeanFlow identity.

    Its recipe: logit-normal times sigmoid(0.4 + n) (t = 0 noise), the adaptive weight 1 / (loss + eps)^p with
    the official code's p = 1, eps = 0.01 (the paper's example eps is 1e-3, this objective's default before
    2026-12), and the online network's derivative (the paper's). ``flow_row_time`` "first" is this
    objective's time of the rows with d = 0 before 2026-12.
    """

    name = "meanflow"
    title = "MeanFlow"
    recipe_source = (
        'Geng et al., "Mean Flows for One-step Generative Modeling" (2025); Gsunshine/meanflow: '
        "configs/default.py and meanflow.py"
    )
    row_kinds = ("interval", "flow")
    step_input = "size"  # the interval d itself, continuous at d = 0, as the paper's network embeds t - r
    ablations = {
        "uniform times": ("time_sampler=uniform",),
        "no adaptive weight": ("loss_weight=mse",),
        "interval rows 50% (not 25%)": ("interval_share=0.5",),
    }

    recipe: Recipe = Recipe(
        time_sampler="logit-normal", loss_weight="adaptive", adaptive_eps=0.01, target_network="online"
    )
    class_dropout: float = knob(0.1, Float(0.0, 1.0), "probability of the null label on flow-matching rows")
    interval_share: float = knob(0.25, Float(0.0, 1.0), "share of rows trained on an interval (d > 0)")
    flow_row_time: str = knob(
        "smaller", OneOf(FLOW_ROW_TIMES), "time of the rows with d = 0: the smaller of two draws, or the first"
    )

    def kind_rows(self, batch: int) -> tuple[int, ...]:
        """(rows with d > 0, which need the forward-mode product: round(B * interval_share); rows with d = 0)."""
        n = round(batch * self.interval_share)
        return n, batch - n

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """One Jacobian-vector product on the share f with d > 0 (primal plus tangent: two forwards),
        then one forward and backward per row."""
        return 1 + 2 * self.kind_rows(batch)[0] / batch, 1.0

    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Draw order after the noise: two times per row, label dropout."""
        n = len(batch.kinds[0])  # the rows with d > 0
        t, d, interval = interval_times(self.recipe, batch.draws, n, self.max_steps, self.flow_row_time)
        labels = dropped_labels(batch.y, batch.draws, self.class_dropout, self.num_classes)
        x_t, v = path.interpolate(batch.x0, batch.x1, t), path.velocity(batch.x0, batch.x1)
        target = v.clone()
        if n:
            net = self.recipe.target_net(networks)
            target[:n] = self.recipe.clamp(identity_target(net, x_t[:n], t[:n], d[:n], v[:n], labels[:n]))
        return Targets(x_t, t, d, target, labels, (~interval).long())
