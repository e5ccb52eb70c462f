"""MeanFlow (Geng et al., 2025, "Mean Flows for One-step Generative Modeling") on the shared network.

The network u(x_t, t, d) predicts the *average* velocity over [t, t + d] (t = 0 noise, t = 1 data):
d u = the displacement of the flow from t to t + d, so one step of size d is x + d u, and d = 0 is
the instantaneous velocity (flow matching). Differentiating d u(x_t, t, e - t) = int_t^e v ds in t
with the end e = t + d held fixed gives the MeanFlow identity

    u = v + d * D u,   D u = (du/dt along the path, end fixed) = du/dx . v + du/dt - du/dd,

which in the paper's reversed time (t = 1 noise, interval [r, t]) reads u = v - (t - r) du/dt. The
target is v + d * D u with v = x1 - (1 - eps) x0 the path velocity and D u one forward-mode product
of the network (``torch.func.jvp`` with tangent (v, 1, -1)), all without gradient (stopped).

Times (the paper's sampler, in this package's direction): two logit-normal draws sigmoid(mu + sigma n);
on the first ``round(B * interval_share)`` rows the interval runs from the smaller to the larger
(d > 0, these rows need the product); on the rest t is the first draw and d = 0. ``time_mu`` = 0.4
here is the paper's -0.4 (time reversed). The loss is the adaptive weighting of the paper:
sum of squares per row divided by (its stopped value + ``adaptive_eps``) ** ``adaptive_power``
(power 0 = plain squared error). Sampled with the step size actually taken, in any number of steps.

Attention: forward-mode AD has no rule for fused attention kernels (flash, memory-efficient); the
first product that meets one switches this objective to the math kernel of scaled_dot_product_attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from .. import path
from ..seeding import RowDraws, RowShare
from ..validation import check_float
from .base import Objective, Targets
from .flow_matching import FlowMatching, check_common


@dataclass
class MeanFlow(Objective):
    """MeanFlow: average velocities over intervals, targets from the MeanFlow identity.

    Args:
        num_classes: real classes; label ``num_classes`` is the null label (0 = unconditional).
        class_dropout: label dropout probability.
        interval_share: share of rows with d > 0 (the paper's best: 0.25); the rest have d = 0.
        time_mu, time_sigma: logit-normal time sampler sigmoid(mu + sigma n) (t = 0 noise).
        adaptive_power: p of the adaptive loss weight 1 / (loss + eps)^p (paper: 1; 0 = plain MSE).
        adaptive_eps: its eps (paper: 1e-3).
        max_steps: M, the finest step count the sampler allows.
    """

    num_classes: int = 0
    class_dropout: float = 0.0
    interval_share: float = 0.25
    time_mu: float = 0.4
    time_sigma: float = 1.0
    adaptive_power: float = 1.0
    adaptive_eps: float = 1e-3
    max_steps: int = 128

    name = "meanflow"
    title = "MeanFlow"

    def __post_init__(self) -> None:
        check_common(self.num_classes, self.class_dropout, self.max_steps)
        check_float("interval_share", self.interval_share, 0.0, 1.0)
        check_float("time_mu", self.time_mu)
        check_float("time_sigma", self.time_sigma, low=0.0, low_open=True)
        check_float("adaptive_power", self.adaptive_power, low=0.0)
        check_float("adaptive_eps", self.adaptive_eps, low=0.0, low_open=True)
        self._flow = FlowMatching(self.num_classes, self.class_dropout, self.max_steps)
        self.math_attention = False  # set once a fused attention kernel refused forward-mode AD

    @property
    def sampling_d(self) -> float | None:
        """Fed the step size actually taken: the average velocity over that step."""
        return None

    def select_teacher(self, model: nn.Module, ema_model: nn.Module) -> nn.Module:
        """The online network: the target is the network's own derivative (stopped)."""
        return model

    def teacher_rows(self, batch: int) -> int:
        """The rows with d > 0, which need the forward-mode product: round(B * interval_share)."""
        return round(batch * self.interval_share)

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """One Jacobian-vector product on the share f with d > 0 (primal plus tangent: two forwards),
        then one forward and backward per row."""
        return 1 + 2 * self.teacher_rows(batch) / batch, 1.0

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
        """Draw order: noise, two logit-normal times per row, label dropout."""
        b, device = x1.shape[0], x1.device
        draws = RowDraws.for_batch(b, generator, device, rows)
        x0 = draws.normal(tuple(x1.shape[1:]), x1.dtype) if x0 is None else x0
        a = torch.sigmoid(self.time_mu + self.time_sigma * draws.normal((), torch.float32))
        c = torch.sigmoid(self.time_mu + self.time_sigma * draws.normal((), torch.float32))
        n = len(draws.head(self.teacher_rows(draws.total)))  # this process's rows with d > 0
        interval = torch.arange(b, device=device) < n
        t = torch.where(interval, torch.minimum(a, c), a)
        d = torch.where(interval, (a - c).abs(), torch.zeros_like(a))
        labels = self._flow.dropped_labels(y, draws)
        x_t, v = path.interpolate(x0, x1, t), path.velocity(x0, x1)
        target = v.clone()
        if n:
            target[:n] = self.identity_target(teacher, x_t[:n], t[:n], d[:n], v[:n], labels[:n])
        return Targets(x_t, t, d, target, labels, interval)

    def identity_target(
        self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, d: torch.Tensor, v: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """v + d * D u: the MeanFlow target for given points, times, step sizes and path velocities."""
        du = self.path_derivative(model, x_t, t, d, v, y)
        return (v + path.expand_like(d, v) * du).detach()

    def path_derivative(
        self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, d: torch.Tensor, v: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """D u = du/dx . v + du/dt - du/dd at (x_t, t, d): one ``torch.func.jvp`` (see module docstring)."""

        def u(x, tt, dd):
            return model(x, tt, dd, y)

        args, tangents = (x_t, t, d), (v, torch.ones_like(t), -torch.ones_like(d))
        if not self.math_attention:
            try:
                return jvp(u, args, tangents)[1].to(x_t.dtype)
            except (NotImplementedError, RuntimeError) as exc:
                if "forward AD" not in str(exc) and "forward-mode" not in str(exc):
                    raise
                self.math_attention = True
        with sdpa_kernel([SDPBackend.MATH]):
            return jvp(u, args, tangents)[1].to(x_t.dtype)

    def loss(self, model: nn.Module, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Adaptively weighted squared error (see module docstring); logs hold the plain mean squared
        error and its parts on the rows with d = 0 (``loss_flow``) and d > 0 (``loss_consistency``)."""
        pred = model(targets.x_t, targets.t, targets.d, targets.y)
        sq = (pred.float() - targets.v.float()).pow(2).flatten(1)
        weight = (sq.sum(dim=1).detach() + self.adaptive_eps) ** -self.adaptive_power
        loss = (weight * sq.sum(dim=1)).mean()
        with torch.no_grad():
            per_row = sq.mean(dim=1)
            mask = targets.bootstrap.to(per_row.dtype)
            logs = {
                "loss": per_row.mean(),
                "loss_flow": (per_row * (1 - mask)).sum() / (mask.numel() - mask.sum()),
                "loss_consistency": (per_row * mask).sum() / mask.sum(),
            }
        return loss, logs
