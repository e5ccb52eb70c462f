"""α-Flow (Zhang et al., ICLR 2026, "AlphaFlow: Understanding and Improving MeanFlow Models", code
snap-research/alphaflow) on the shared network.

As MeanFlow (:mod:`.meanflow`), the network u(x_t, t, d) predicts the average velocity over [t, t + d]
(t = 0 noise, t = 1 data; one step of size d is x + d u). α-Flow is one family of targets for it, indexed
by α in [0, 1] and moved from 1 to 0 over training by a schedule. On a row with an interval (d > 0), with
V the row's velocity (the path velocity v = x1 - (1 - eps) x0, or its guided form below):

    s = α d,   x' = x_t + s V,   target = α V + (1 - α) u(x', t + s, d - s)      (0 < α <= 1)
    target = V + d * D u,   D u = du/dx . V + du/dt - du/dd                       (α = 0)

that is: move a share α of the interval along V, then take the network's own average velocity over the
rest of the interval (no gradient), and average the two by length. At α = 1 this is trajectory flow
matching (target V, the network not called); for 0 < α < 1 a shortcut-style self-consistency of one
step along V and one of the network; as α -> 0 its first order in α is MeanFlow's identity, which is
used exactly once α reaches 0 (one Jacobian-vector product of the network, with tangent (V, 1, -1):
:func:`~.meanflow_identity.identity_target`, MeanFlow's own code). Rows with d = 0 (a share
``flow_share`` of the batch) regress V at every α.

The authors' code works in reversed time (their t_a = 1 - t is noise at 1; their network
u_a(z, r_a, t_a) = -u(z, 1 - t_a, t_a - r_a)): their dt = α (t_a - r_a) is our s, their shifted point
x_t - dt V_a is our x' (V_a = -V), their net(x', r_a, t_a - dt) is minus our u(x', t + s, d - s), and
their target (dt V_a + (t_a - dt - r_a) u_next) / (t_a - r_a) is minus ours above. Their JVP branch
differentiates along (V_a, 0 for r_a, 1 for t_a): r_a fixed is our end t + d fixed.

The recipe and knobs, at the authors' values (``infra/experiments/experiments-alphaflow.yaml``,
``src/training/loss.py``):

- α schedule (``alpha_*``): from ``alpha_initial`` = 1 to ``alpha_final`` = 0 between the shares
  ``alpha_begin`` and ``alpha_end`` of the run, ``sigmoid`` (their ``get_ratio``: a logistic of
  steepness ``alpha_gamma`` = 25 centred on the middle of the span), ``linear``, ``step`` or
  ``constant``; a value below ``alpha_clamp`` = 0.005 snaps to 0, one above 1 - alpha_clamp to 1. Their
  B/2 recipe anneals over the whole run (0 to 400k of 400k steps: shares 0 to 1); their XL/2 recipe from
  600k to 1M of 1.2M (``alpha_begin=0.5 alpha_end=0.8333``). The schedule is in shares of the run, so a
  shorter run is a run of its own (``schedule_spans_run``);
- rows: the first B - int(B * flow_share) rows have an interval (their ``ratio_fm`` = 0.5 for B/2 and
  XL/2, 0.25 for B/2 with guidance); times from the pair sampler (two logit-normal draws sigmoid(0.4 + n),
  their logit-normal(-0.4, 1) in reversed time; the interval runs from the smaller to the larger), the
  rows with d = 0 one draw of the same sampler (``flow_row_time`` "first": their ``time_sampling_fm``);
- loss: the adaptive weight on each row's *mean* squared error m, alpha_w m / (sg(m) + eps) with eps
  = 1e-3 (their ``adaptive_loss_weight_eps``; ``adaptive_per_element`` divides the squared errors by the
  row's size before the recipe's weight, so ``adaptive_eps`` is per element), and alpha_w = α on the rows
  with an interval while 0 < α (their ``weight_d``), 1 elsewhere;
- target network: the online network; targets of the rows with 0 < α bounded by ``target_clamp`` = 4
  (their ``clamp_utgt``, the value their XL/2 and MeanFlow-with-guidance configs set; their base loss
  config's default as quoted by a third-party port of it);
- guidance in training (``cfg_omega``, ``cfg_kappa``, window [``cfg_t_min``, ``cfg_t_max``] in our time):
  on rows in the window V = omega v + kappa u(x_t, t, 0, y) + (1 - omega - kappa) u(x_t, t, 0, null)
  (the network at d = 0, no gradient); their B/2 recipe has none (omega 1, kappa 0), B/2 with guidance
  omega 1, kappa 0.5, XL/2 omega 0.2, kappa 0.92 on their t_a in (0, 0.75), ours [0.25, 1]. Labels are
  dropped (``class_dropout``, theirs 0.1 with guidance, 0 without) on the rows in the window, before the
  guided velocity is computed (a dropped row's conditional branch is then the null label's), as theirs.

Sampling: the step actually taken, any number of steps (their "trajectory sampling": one step is
x0 + u(x0, 0, 1)). Their two-step numbers re-noise between steps ("consistency sampling"): each step jumps
to the data end and the next starts on the path from fresh noise to that estimate: the sampler
``shortcut_models.sampling.renoising_sample`` (``shortcut sample --sampler renoise``) does it, for any method.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from .. import path
from ..seeding import RowDraws
from ..validation import Flag, Float, OneOf
from .base import Objective
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .knobs import knob
from .labels import class_labels, null_labels
from .loss_weights import LOSS_WEIGHTS
from .meanflow_identity import identity_target
from .recipe import Recipe
from .time_samplers import FLOW_ROW_TIMES, interval_times

ALPHA_SCHEDULES = ("sigmoid", "linear", "step", "constant")
SCHEDULE_POINTS = 1000  # the cost model averages the passes over this many evenly spaced points of the run
WINDOW_DRAWS = 4096  # rows drawn (fixed seed) to estimate the share of rows in the guidance window


@dataclass
class WeightedTargets(Targets):
    """Targets with a factor per row on its loss (``weight`` [B]): α on the rows with an interval while 0 < α."""

    weight: torch.Tensor | None = None

    def split(self, chunks: int) -> list[Targets]:
        """``chunks`` equal row blocks (gradient accumulation), each keeping its rows' factors."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(Targets)}
        blocks = Targets(**fields).split(chunks)
        weights = [None] * chunks if self.weight is None else self.weight.chunk(chunks)
        return [WeightedTargets(**vars(b), weight=w) for b, w in zip(blocks, weights)]


@dataclass(kw_only=True)
class AlphaFlow(Objective):
    """α-Flow: average velocities whose target moves from trajectory flow matching to the MeanFlow identity by α.

    See the module docstring for the maths and the authors' settings.
    """

    name = "alpha-flow"
    title = "α-Flow"
    recipe_source = (
        'Zhang et al., "AlphaFlow: Understanding and Improving MeanFlow Models" (ICLR 2026); its code '
        "snap-research/alphaflow (not among the pinned reference repositories): "
        "infra/experiments/experiments-alphaflow.yaml and src/training/loss.py (the online network)"
    )
    row_kinds = ("interval", "flow")
    step_input = "size"  # the interval d itself, as MeanFlow's
    schedule_spans_run = True  # the α schedule is in shares of the run
    ablations = {
        "no curriculum (alpha 0: the MeanFlow identity throughout)": ("alpha_schedule=constant", "alpha_initial=0"),
        "no adaptive weight": ("loss_weight=mse",),
        "rows with d = 0: 75% (not 50%)": ("flow_share=0.75",),
    }

    # their logit-normal(-0.4, 1) times (reversed), adaptive weight eps 1e-3 per element, online network, clamp 4
    recipe: Recipe = Recipe(
        time_sampler="logit-normal",
        loss_weight="adaptive",
        adaptive_eps=1e-3,
        target_network="online",
        target_clamp=4.0,
    )
    flow_share: float = knob(0.5, Float(0.0, 1.0), "share of rows with d = 0 (the authors' ratio_fm)")
    flow_row_time: str = knob(
        "first", OneOf(FLOW_ROW_TIMES), "time of the rows with d = 0: one draw (first), or the smaller of two"
    )
    class_dropout: float = knob(0.1, Float(0.0, 1.0), "probability of the null label on rows in the guidance window")
    alpha_schedule: str = knob("sigmoid", OneOf(ALPHA_SCHEDULES), "how α moves from alpha_initial to alpha_final")
    alpha_initial: float = knob(1.0, Float(0.0, 1.0), "α before alpha_begin (1: trajectory flow matching)")
    alpha_final: float = knob(0.0, Float(0.0, 1.0), "α after alpha_end (0: the MeanFlow identity)")
    alpha_begin: float = knob(0.0, Float(0.0, 1.0), "share of the run where α starts to move")
    alpha_end: float = knob(1.0, Float(0.0, 1.0), "share of the run where α has reached alpha_final")
    alpha_gamma: float = knob(25.0, Float(0.0, low_open=True), "steepness of the sigmoid schedule")
    alpha_clamp: float = knob(0.005, Float(0.0, 0.5), "α below this snaps to 0, above 1 - this to 1")
    adaptive_per_element: bool = knob(
        True, Flag(), "adaptive weight on each row's mean squared error (eps per element)"
    )
    cfg_omega: float = knob(1.0, Float(), "guidance in training: weight of the path velocity")
    cfg_kappa: float = knob(
        0.0, Float(), "guidance in training: weight of the conditional output at d = 0 (null label: 1 - omega - kappa)"
    )
    cfg_t_min: float = knob(0.0, Float(0.0, 1.0), "guidance window from this time (t = 0 noise; 1 - their t_max)")
    cfg_t_max: float = knob(1.0, Float(0.0, 1.0), "guidance window up to this time (1 - their t_min)")

    def __post_init__(self) -> None:
        """The knobs' range checks, and a schedule span that moves forward."""
        super().__post_init__()
        if self.alpha_schedule in ("sigmoid", "linear") and not self.alpha_end > self.alpha_begin:
            raise ValueError(
                f"alpha_end must be larger than alpha_begin for the {self.alpha_schedule} schedule, "
                f"got alpha_begin={self.alpha_begin}, alpha_end={self.alpha_end}"
            )

    # ------------------------------------------------------------ rows, α, cost
    def kind_rows(self, batch: int) -> tuple[int, ...]:
        """(rows with an interval: B - int(B * flow_share); rows with d = 0: int(B * flow_share), as the authors)."""
        n = int(batch * self.flow_share)
        return batch - n, n

    def alpha_at(self, share: float) -> float:
        """α at the share ``share`` of the run (the authors' ``get_ratio`` over shares of the run, with the snap)."""
        a0, a1, lo, hi = self.alpha_initial, self.alpha_final, self.alpha_begin, self.alpha_end
        if self.alpha_schedule == "constant" or share < lo:
            value = a0
        elif self.alpha_schedule == "step" or share > hi:
            value = a1
        elif self.alpha_schedule == "linear":
            value = a0 + (a1 - a0) * (share - lo) / (hi - lo)
        else:  # sigmoid, centred on the middle of the span
            z = (share - (lo + hi) / 2) / (hi - lo)
            value = a0 + (a1 - a0) * 0.5 * (1.0 + math.tanh(z * self.alpha_gamma / 2))  # the logistic, overflow-free
        if value < self.alpha_clamp:
            return 0.0
        if value > 1.0 - self.alpha_clamp:
            return 1.0
        return float(value)

    def alpha(self, progress: Progress) -> float:
        """α at training step ``progress.step`` of ``progress.total``."""
        return self.alpha_at(progress.step / max(progress.total, 1))

    @property
    def guides(self) -> bool:
        """Whether guidance in training changes anything (labels exist and (omega, kappa) != (1, 0))."""
        return self.num_classes > 0 and (self.cfg_omega, self.cfg_kappa) != (1.0, 0.0)

    def window_share(self, batch: int) -> float:
        """Expected share of rows whose time lies in the guidance window, from fixed draws of the sampler."""
        draws = RowDraws.for_batch(WINDOW_DRAWS, torch.Generator().manual_seed(0), torch.device("cpu"))
        interval_rows = round(WINDOW_DRAWS * self.kind_rows(batch)[0] / batch)
        t, _, _ = interval_times(self.recipe, draws, interval_rows, self.max_steps, self.flow_row_time)
        return ((t >= self.cfg_t_min) & (t <= self.cfg_t_max)).double().mean().item()

    @staticmethod
    def interval_passes(alpha: float) -> float:
        """Forwards per row with an interval to build its target: none at α = 1, one (no gradient) for
        0 < α < 1, a Jacobian-vector product (two forwards) at α = 0."""
        return 0.0 if alpha == 1.0 else (2.0 if alpha == 0.0 else 1.0)

    def guidance_passes(self, batch: int) -> float:
        """Forwards per row of the guided velocity at d = 0: one per label branch with a nonzero weight, on
        the share of rows in the window (0 without guidance in training)."""
        if not self.guides:
            return 0.0
        branches = (self.cfg_kappa != 0.0) + (1.0 - self.cfg_omega - self.cfg_kappa != 0.0)
        return branches * self.window_share(batch)

    def passes_at(self, alpha: float, batch: int) -> tuple[float, float]:
        """(forward, backward) passes per row at a given α: :meth:`interval_passes` on the share f of rows
        with an interval, :meth:`guidance_passes`, then one forward and backward per row."""
        f = self.kind_rows(batch)[0] / batch
        return 1.0 + f * self.interval_passes(alpha) + self.guidance_passes(batch), 1.0

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """The passes of :meth:`passes_at`, averaged over the run's α schedule (evenly spaced points)."""
        f = self.kind_rows(batch)[0] / batch
        mean = sum(self.interval_passes(self.alpha_at(i / SCHEDULE_POINTS)) for i in range(SCHEDULE_POINTS))
        return 1.0 + f * mean / SCHEDULE_POINTS + self.guidance_passes(batch), 1.0

    # ------------------------------------------------------------ targets
    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Draw order after the noise: two times per row, label dropout (as MeanFlow's)."""
        draws, n = batch.draws, len(batch.kinds[0])  # n: the rows with an interval, leading
        t, d, interval = interval_times(self.recipe, draws, n, self.max_steps, self.flow_row_time)
        window = (t >= self.cfg_t_min) & (t <= self.cfg_t_max)
        labels = class_labels(batch.y, len(draws), self.num_classes, batch.device)
        if batch.y is not None and self.class_dropout > 0:
            drop = (draws.uniform() < self.class_dropout) & window
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        x_t, v = path.interpolate(batch.x0, batch.x1, t), path.velocity(batch.x0, batch.x1)
        alpha = self.alpha(progress)
        guided = window if (batch.y is not None and self.guides) else torch.zeros_like(window)
        needs_net = bool(guided.any()) or (n > 0 and alpha < 1.0)
        net = self.recipe.target_net(networks) if needs_net else None
        if bool(guided.any()):
            v = v.clone()
            v[guided] = self.guided_velocity(net, x_t[guided], t[guided], v[guided], labels[guided])
        target = v.clone()
        if n:
            target[:n] = self.interval_target(net, x_t[:n], t[:n], d[:n], v[:n], labels[:n], alpha)
        weight = torch.ones_like(t)
        if alpha > 0.0:
            weight[:n] = alpha
        return WeightedTargets(x_t, t, d, target.detach(), labels, (~interval).long(), weight=weight)

    def interval_target(
        self,
        net: Network | None,
        x_t: torch.Tensor,
        t: torch.Tensor,
        d: torch.Tensor,
        v: torch.Tensor,
        y: torch.Tensor,
        alpha: float,
    ) -> torch.Tensor:
        """The target of rows with an interval at ``alpha`` (see the module docstring); ``v`` is their velocity V."""
        if alpha == 0.0:
            return identity_target(net, x_t, t, d, v, y)
        if alpha == 1.0:
            return self.recipe.clamp(v)  # the authors skip the network: its weight (1 - α) is 0
        s = alpha * d
        u_next = net(x_t + path.expand_like(s, v) * v, t + s, d - s, y).to(v.dtype)
        return self.recipe.clamp(alpha * v + (1.0 - alpha) * u_next)

    def guided_velocity(
        self, net: Network, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """omega v + kappa u(x_t, t, 0, y) + (1 - omega - kappa) u(x_t, t, 0, null), the branches with a
        nonzero weight in one call."""
        null = null_labels(len(y), self.num_classes, y.device)
        branches = [(w, lab) for w, lab in ((self.cfg_kappa, y), (1.0 - self.cfg_omega - self.cfg_kappa, null)) if w]
        out = self.cfg_omega * v
        if branches:
            k = len(branches)
            both = net(
                torch.cat([x_t] * k),
                torch.cat([t] * k),
                torch.zeros_like(t).repeat(k),
                torch.cat([b[1] for b in branches]),
            )
            for (w, _), u in zip(branches, both.to(v.dtype).chunk(k)):
                out = out + w * u
        return out

    # ------------------------------------------------------------ loss
    def loss(self, model: nn.Module, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The recipe's loss weight on each row (on its mean squared error with ``adaptive_per_element``), times
        the row's factor (α on the rows with an interval while 0 < α), averaged; logs as every objective's."""
        pred = model(targets.x_t, targets.t, targets.d, targets.y, **targets.network_kwargs())
        sq = (pred.float() - targets.v.float()).pow(2).flatten(1)
        per_element = self.adaptive_per_element and self.recipe.loss_weight == "adaptive"
        per_row = LOSS_WEIGHTS[self.recipe.loss_weight](sq / sq.shape[1] if per_element else sq, self.recipe)
        weight = getattr(targets, "weight", None)
        loss = (per_row if weight is None else per_row * weight.to(per_row.dtype)).mean()
        return loss, self.loss_logs(sq.detach().mean(dim=1), targets.kind)
