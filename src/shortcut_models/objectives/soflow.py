"""SoFlow (Luo et al., arXiv 2512.15657, "SoFlow: Solution Flow Models for One-Step Generative Modeling") on the
shared network, as its authors' code (zlab-princeton/SoFlow, ``models.py`` and ``train.py``): no
Jacobian-vector product.

The network u(x_t, t, d) gives the solution map of the flow in Euler form, f(x_t, t, t + d) = x_t + d u
(t = 0 noise, t = 1 data; the authors' time runs the other way, t_theirs = 1 - t, and their network
NN(x, t_theirs, s_theirs) = -u(x, 1 - t_theirs, t_theirs - s_theirs): their DiT embeds t_theirs and the
gap t_theirs - s_theirs, which is our d). At d = 0 it is the velocity. Two kinds of rows:

- **consistency** (the leading rows, 25%; kind 0, as every method's rows that the network builds): a start
  t and an end t + d, d >= 1e-4, from two logit-normal draws (the authors' ``time_mean``/``time_std``:
  ``start_mu``/``end_mu`` here, in our time), and a point a share r of the way: t_l = t + max(r d, 1e-4).
  The guided velocity V at x_t (mixed here: mix V + (1 - mix) v_c, v_c the network's velocity with the
  row's label, mix = ``mix_ratio``) moves x_t to x_l = x_t + (t_l - t) V, and the network's own solution
  from there, f(x_l, t_l, t + d), without gradient, is the target of f(x_t, t, t + d):

      target(u) = (f(x_l, t_l, t + d) - x_t) / d = r_l V + (1 - r_l) u(x_l, t_l, (1 - r_l) d),

  with r_l = (t_l - t) / d. The authors' loss is ||f(x_t) - sg f(x_l)||^2 / (t_l - t)^2, i.e. the error of u
  scaled by a = 1 / r_l, and they train it through a surrogate with the gradient of that loss times
  r_l / 2 (their "stabler implementation"); here its gradient exactly. r follows the authors' schedule
  over the run: ``ratio_start`` * (``ratio_end`` / ``ratio_start``)^(step / steps) (exponential), or
  linear, cosine or constant (``ratio_end``).
- **flow** (the trailing ``int(B * flow_share)`` rows, 75%; the authors' leading rows): flow matching at
  d = 0, t logit-normal from the recipe (sigmoid(0.2 + n): the authors' sigmoid(-0.2 + n) in their time).
  The target is the *guided* velocity V = v + g(t) (w - 1) (v - v_u), v = x1 - (1 - eps) x0 the path
  velocity, v_u the network's velocity with the null label at d = 0, w = ``cfg_scale``, g(t) a smooth decay
  of the guidance to 0 near the noise (below t = ``cfg_decay_below``, as the authors'
  ``get_cfg_decay_scale``). The authors regress onto mix V + (1 - mix) sg(u); its gradient is mix times
  that of regressing onto V, so the target here is V and the row's error carries the scale a = mix (below).

Loss: each row's mean squared error m of u against the target, scaled by its a (flow rows: mix where the
row is guided, else 1; consistency rows: 1 / r_l): the loss weight sees the squares of a (u - target)
and the row's loss is divided by a (flow) or 2 a (consistency), which gives the authors' gradients. With
``loss_weight=adaptive`` (their default: p = 1, eps = 0.01) the weight is theirs, a^2 m / sg(a^2 m + eps)^p
on each row's *mean* square (the shared adaptive weight takes the sum); every other loss weight applies
to the scaled squares as is. Rows are averaged over the whole batch, as the authors' 0.75 / 0.25
weighting of their two means.

Labels: each row's label is dropped to the null label with probability ``class_dropout`` (the authors'
``cfg_drop_rate``); a dropped row's target is unguided (V = v). Data without labels, or ``cfg_scale`` 1,
train without guidance (V = v, a = 1), as the authors' unconditional runs. The network calls for the
targets use the online network (the authors' live model; ``target_network``).

Sampling: the step actually taken, x + d u, in any number of steps (one step is the authors' one-step
sampler). The authors sample two steps by jumping to the data and noising back to the middle time; our
sampler takes two plain steps of 1/2 instead.

Defaults are the authors' ImageNet configuration (``imagenet.yaml``). tests/objectives/test_soflow_reference.py
compares the loss's gradients and the targets with the authors' ``Soflow.get_velocity_loss`` and
``get_consistency_loss`` in float64.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .. import path
from ..validation import Float, OneOf
from .base import Objective
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .knobs import knob
from .labels import dropped_labels, null_labels
from .loss_weights import LOSS_WEIGHTS
from .recipe import Recipe
from .time_samplers import times

MIN_GAP = 1e-4  # the authors' smallest gap between the times of a consistency row (start to end, start to middle)
DECAY_RATE = 0.025  # k of the authors' guidance decay 1 - exp(-k u / (1 - u))
RATIO_SCHEDULES = ("exponential", "linear", "cosine", "constant")


def ratio_at(schedule: str, start: float, end: float, progress: Progress) -> float:
    """The share r of the consistency interval to the middle point at ``progress`` (the authors' r(k, K))."""
    k = progress.step / max(progress.total, 1)
    if schedule == "constant":
        return end
    if schedule == "linear":
        return start + (end - start) * k
    if schedule == "cosine":
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * k))
    return start * (end / start) ** k


def guidance_decay(t: torch.Tensor, below: float) -> torch.Tensor:
    """The authors' guidance strength at time ``t`` (t = 0 noise): 1 from ``below`` on, falling smoothly to 0
    at the noise, 1 - exp(-k u / (1 - u)) with u = t / below (capped under 1); 1 everywhere when ``below`` is 0."""
    if below <= 0:
        return torch.ones_like(t)
    u = (t / below).clamp(0.0, 1.0 - 1e-6)
    return torch.where(t >= below, torch.ones_like(t), 1.0 - torch.exp(-DECAY_RATE * u / (1.0 - u)))


@dataclass
class ScaledTargets(Targets):
    """Targets with each row's error scale ``scale`` [B] (the authors' residual is scale * (u - v))."""

    scale: torch.Tensor | None = None

    def split(self, chunks: int) -> list[ScaledTargets]:
        """``chunks`` equal row blocks (gradient accumulation), each with its rows' scales."""
        names = [f.name for f in dataclasses.fields(self)]
        parts = [[None] * chunks if (v := getattr(self, n)) is None else v.chunk(chunks) for n in names]
        return [ScaledTargets(*(p[i] for p in parts)) for i in range(chunks)]


@dataclass(kw_only=True)
class SoFlow(Objective):
    """SoFlow: flow matching plus the solution consistency of the network with itself a little further on the path.

    See the module docstring for the maths and the authors' settings.
    """

    name = "soflow"
    title = "SoFlow"
    recipe_source = (
        'Luo et al., "SoFlow: Solution Flow Models for One-Step Generative Modeling" (arXiv 2512.15657); '
        "zlab-princeton/SoFlow: imagenet.yaml, models.py and train.py"
    )
    row_kinds = ("consistency", "flow")
    step_input = "size"  # the gap d itself, continuous at d = 0, as the authors' DiT embeds t - s
    schedule_spans_run = True  # the middle point's share r decays over the run
    ablations = {
        "uniform times": ("time_sampler=uniform",),
        "no adaptive weight": ("loss_weight=mse",),
        "constant middle share": ("ratio_schedule=constant",),
        "flow rows 50% (not 75%)": ("flow_share=0.5",),
    }

    # the authors': flow rows at sigmoid(0.2 + n) (their time_mean[0] -0.2, time_std[0] 1.0), the adaptive weight
    # p = 1, eps = 0.01 on each row's mean square, the live (online) network for the guided and the consistency targets
    recipe: Recipe = Recipe(
        time_sampler="logit-normal",
        time_mu=0.2,
        time_sigma=1.0,
        loss_weight="adaptive",
        adaptive_eps=0.01,
        target_network="online",
    )
    class_dropout: float = knob(0.1, Float(0.0, 1.0), "probability of the null label (authors' cfg_drop_rate)")
    flow_share: float = knob(0.75, Float(0.0, 1.0), "share of flow-matching rows (authors' velocity_loss_ratio)")
    cfg_scale: float = knob(3.0, Float(1.0), "guidance scale trained into the targets (1: none)")
    mix_ratio: float = knob(
        0.25, Float(0.0, 1.0, low_open=True), "share of the guided velocity in the target (authors' mix_ratio)"
    )
    cfg_decay_below: float = knob(
        0.2, Float(0.0, 1.0, high_open=True), "guidance decays to 0 below this time (authors' 1 - cfg_decay_time)"
    )
    start_mu: float = knob(-0.2, Float(), "consistency rows' start time: logit-normal mean (authors' -time_mean[2])")
    start_sigma: float = knob(0.8, Float(0.0, low_open=True), "consistency rows' start time: logit-normal spread")
    end_mu: float = knob(1.0, Float(), "consistency rows' end time: logit-normal mean (authors' -time_mean[1])")
    end_sigma: float = knob(0.8, Float(0.0, low_open=True), "consistency rows' end time: logit-normal spread")
    ratio_schedule: str = knob("exponential", OneOf(RATIO_SCHEDULES), "how the middle point's share r moves")
    ratio_start: float = knob(0.1, Float(0.0, 1.0, low_open=True), "share r at the first step (authors' l_init_ratio)")
    ratio_end: float = knob(0.002, Float(0.0, 1.0, low_open=True), "share r at the last step (authors' l_end_ratio)")

    def kind_rows(self, batch: int) -> tuple[int, ...]:
        """(consistency rows, the rest; flow rows int(B * flow_share), as the authors' code)."""
        n = int(batch * self.flow_share)
        return batch - n, n

    @property
    def guided(self) -> bool:
        """Whether labelled data trains with guidance (a class-conditional run with cfg_scale above 1)."""
        return self.num_classes > 0 and self.cfg_scale > 1.0

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """The null-label velocity on every row and the labelled one on the consistency share c when guided
        (c only with mix_ratio < 1), the network at the middle point on c, then one forward and backward per row."""
        c = self.kind_rows(batch)[0] / batch
        guidance = (1 + (c if self.mix_ratio < 1 else 0)) if self.guided else 0
        return 1 + guidance + c, 1.0

    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Draw order after the noise: consistency rows' start and end times; flow rows' times; label dropout."""
        pair_draws, flow_draws = batch.kinds
        nc, nf, device = len(pair_draws), len(flow_draws), batch.device
        x0, x1 = batch.x0, batch.x1
        start = dataclasses.replace(self.recipe, time_mu=self.start_mu, time_sigma=self.start_sigma)
        end = dataclasses.replace(self.recipe, time_mu=self.end_mu, time_sigma=self.end_sigma)
        start, end = times(start, pair_draws, self.max_steps), times(end, pair_draws, self.max_steps)
        t_pair = start.clamp(max=1.0 - MIN_GAP)  # the authors' t = max(t, 1e-4), s = min(s, t - 1e-4) in their time
        d_pair = torch.maximum(end, t_pair + MIN_GAP) - t_pair
        t_flow = times(self.recipe, flow_draws, self.max_steps)
        t = torch.cat([t_pair, t_flow])
        d = torch.cat([d_pair, torch.zeros_like(t_flow)])
        labels = dropped_labels(batch.y, batch.draws, self.class_dropout, self.num_classes)
        x_t, v = path.interpolate(x0, x1, t), path.velocity(x0, x1)
        kind = (torch.arange(nc + nf, device=device) >= nc).long()
        scale = torch.ones(nf + nc, dtype=x_t.dtype, device=device)
        if nf + nc == 0:
            return ScaledTargets(x_t, t, d, v, labels, kind, scale=scale)

        net = self.recipe.target_net(networks)
        guided = self.guided and batch.y is not None
        kept = labels != self.num_classes  # a dropped row (or one without a label) is unguided
        target = v
        if guided:
            target, scale = self.guided_velocities(net, x_t, t, v, labels, kept, nc)
        if nc:
            target = target.clone()
            target[:nc], scale[:nc] = self.consistency_target(
                net, x_t[:nc], t_pair, d_pair, target[:nc], labels[:nc], progress
            )
        return ScaledTargets(x_t, t, d, target, labels, kind, scale=scale)

    def guided_velocities(
        self,
        net: Network,
        x_t: torch.Tensor,
        t: torch.Tensor,
        v: torch.Tensor,
        labels: torch.Tensor,
        kept: torch.Tensor,
        nc: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(V, a): the guided velocity of every row, V = v + g(t) (w - 1) (v - v_u), mixed on the consistency rows
        (the first ``nc`` rows) with the labelled velocity v_c as mix V + (1 - mix) v_c; v itself on rows
        whose label was dropped. a: the flow rows' error scale, mix where guided, else 1 (1 on consistency rows).
        One batched call: the null label on every row, the row's label on the consistency rows (mix < 1)."""
        n = x_t.shape[0]
        null = null_labels(n, self.num_classes, x_t.device)
        mixed = self.mix_ratio < 1.0
        rows = slice(0, nc) if mixed else slice(0, 0)
        calls = torch.cat([t, t[rows]])
        out = net(torch.cat([x_t, x_t[rows]]), calls, torch.zeros_like(calls), torch.cat([null, labels[rows]])).to(
            v.dtype
        )
        v_u, v_c = out[:n], out[n:]
        strength = guidance_decay(t.to(v.dtype), self.cfg_decay_below) * (self.cfg_scale - 1.0)
        guided = v + path.expand_like(strength, v) * (v - v_u)
        if mixed:
            guided[:nc] = self.mix_ratio * guided[:nc] + (1.0 - self.mix_ratio) * v_c
        keep = path.expand_like(kept, v).bool()
        target = torch.where(keep, guided, v)
        flow = torch.arange(n, device=x_t.device) >= nc
        scale = torch.where(kept & flow, self.mix_ratio, 1.0).to(v.dtype)
        return target, scale

    def consistency_target(
        self,
        net: Network,
        x_t: torch.Tensor,
        t: torch.Tensor,
        d: torch.Tensor,
        velocity: torch.Tensor,
        labels: torch.Tensor,
        progress: Progress,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(target, a) of the consistency rows: r_l V + (1 - r_l) u(x_l, t_l, (1 - r_l) d), with x_l = x_t + (t_l - t) V
        the point a share r_l of the way (``velocity`` V), and the error scale a = 1 / r_l."""
        r = ratio_at(self.ratio_schedule, self.ratio_start, self.ratio_end, progress)
        t, d = t.to(x_t.dtype), d.to(x_t.dtype)
        gap = torch.clamp(d * r, min=MIN_GAP)
        x_l = x_t + path.expand_like(gap, x_t) * velocity
        u_l = net(x_l, t + gap, (d - gap).clamp(min=0.0), labels).to(x_t.dtype)
        share = gap / d
        target = path.expand_like(share, x_t) * velocity + path.expand_like(1.0 - share, x_t) * u_l
        return self.recipe.clamp(target), 1.0 / share

    def loss(self, model: torch.nn.Module, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of ``model`` on ``targets`` and its logs (as :meth:`Objective.loss`: ``loss`` is the plain mean
        squared error against the targets, ``loss_<kind>`` the same per kind); the loss itself is the mean over
        rows of the loss weight on the scaled squares, divided by a (flow) or 2 a (consistency): the authors'
        gradients (module docstring)."""
        pred = model(targets.x_t, targets.t, targets.d, targets.y, **targets.network_kwargs())
        dtype = torch.promote_types(pred.dtype, torch.float32)  # float32 under mixed precision, float64 kept
        sq = (pred.to(dtype) - targets.v.to(dtype)).pow(2).flatten(1)
        a = targets.scale.to(sq.dtype) if isinstance(targets, ScaledTargets) else torch.ones_like(sq[:, 0])
        scaled = sq * (a * a)[:, None]
        if self.recipe.loss_weight == "adaptive":  # the authors' weight on each row's mean square
            per_row = LOSS_WEIGHTS["adaptive"](scaled / sq.shape[1], self.recipe)
        else:
            per_row = LOSS_WEIGHTS[self.recipe.loss_weight](scaled, self.recipe)
        divisor = torch.where(targets.kind == 0, 2 * a, a)
        loss = (per_row / divisor).mean()
        mse = sq.detach().mean(dim=1)
        return loss, self.loss_logs(mse, targets.kind)
