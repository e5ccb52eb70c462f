"""Inductive Moment Matching (Zhou, Ermon and Song, 2025) on the shared network, as ESC's port of it.

IMM matches distributions instead of points. The rows of a batch form groups of ``group_size``
consecutive rows, the *particles* of the group: each is its own data row x1 with its own noise x0,
and all share three times, a start t, an intermediate s and an end r = t + d (t = 0 noise, t = 1
data, t <= s). Per group:

1. the network jumps from the start to the end: ``x_tr = x_t + d u(x_t, t, d)`` (with gradient);
2. the target network jumps from the later point of the same paths: ``x_sr = x_s + (r - s) u(x_s, s, r - s)``
   (no gradient; ``Targets.v`` holds these target particles, ``target_clamp`` bounds them);
3. the loss is the squared maximum mean discrepancy (MMD^2, the biased estimate with i = j terms)
   between the particles {x_tr} and {x_sr} under the Laplace kernel
   ``k(a, b) = exp(-sigma ||a - b|| / (D (sigma |d| + 1e-6)))`` (D elements per particle, the squared
   distance floored at 1e-8 / sigma^2), times the group's time weight (below).

Times, written in this package's direction (ESC's code runs t = 1 noise; its T = 0.994 is our
``time_min`` = 0.006): t = time_min + (1 - time_min) a with a from the time sampler (uniform by
default, as ESC); the end uniform on [t, 1]: d = b (1 - t), b ~ U[0, 1); the intermediate s one
notch of the noise-to-signal ratio n(t) = (1 - t) / t closer to the data than t:
n(s) = max(n(t) - n(time_min) / 2^gamma, 0). ESC's port lets s pass the end r (about one group in
nine at the defaults): the target network then steps back by r - s < 0, a step size the DiT's
embedding of -log2 max(d, 1e-12) reads as its finest. ``clip_intermediate`` keeps s <= r instead
(the max the IMM paper's mapping function takes; ESC's port leaves it out). The time weight is ESC's
``alpha^a / (alpha^2 + sigma^2) * 0.5 * (-dlogSNR/dt) * sigmoid(b - logSNR)``, with alpha = t and
sigma = 1 - t on our path, a = ``weight_a``, b = ``weight_b``; simplified it is

    w(t) = t^(a-1) (1 - t) / ((t^2 + (1 - t)^2) ((1 - t)^2 + e^-b t^2)),

which is also finite at t = 1.

ESC scales its latents so that the noise has standard deviation ``SIGMA_DATA`` = 0.5 and feeds the
network z / 0.5; our path's noise has standard deviation 1 and the network sees x_t itself, the same
network input. The kernel keeps ESC's numbers by measuring distances in its units (sigma = 0.5).

The group loss is not a per-row regression: ``loss`` overrides the base class. The MMD^2 of a group
plays the role of a row's squared error for the ``loss_weight`` recipe part (``mse``: as ESC), and
the logs are the plain MMD^2 averaged over groups. Each micro-batch must hold whole groups: the
batch size, and each process's rows per micro-batch, must be multiples of ``group_size``
(ValueError otherwise; the trainer checks before the first step). Under several processes a group is
a block of consecutive rows of one process (as in ESC's code, where each process forms its own
groups), so a run's groups, not its rows' draws, depend on the number of processes.

Departure from ESC's code: its kernel broadcasts each group's kernel and time weights over every
group of the batch (a [G, G, m, m] loss whose mean is mean_g w_g mean_g' MMD^2_g(g')); here, as
the method states, each group is weighed by its own times. With one group per batch both agree.

Sampling: one step or several (ESC's sampler: equal steps from noise to data), each ``x + d u`` with
the step actually taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .. import path
from ..validation import Flag, Float, Int
from .base import Objective
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .knobs import knob
from .labels import dropped_labels
from .loss_weights import per_row_loss
from .recipe import LOGIT_NORMAL_TIMES, Recipe
from .time_samplers import times

SIGMA_DATA = 0.5  # the noise's standard deviation in ESC's (and IMM's) latent units, where distances are measured
WIDTH_EPS = 1e-6  # added to the kernel's width sigma |d|
DISTANCE_FLOOR = 1e-8  # floor of a squared distance (in those units) before its square root


def noise_to_signal(t: torch.Tensor) -> torch.Tensor:
    """n(t) = (1 - t) / t: the noise-to-signal ratio of our path at time t."""
    return (1 - t) / t


def time_weight(t: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """ESC's weight of a group started at t (see the module docstring), in float64."""
    t = t.double()
    u = 1 - t
    return t ** (a - 1) * u / ((t * t + u * u) * (u * u + math.exp(-b) * t * t))


def kernel_width(d: torch.Tensor) -> torch.Tensor:
    """sigma |d| + 1e-6: the width of a group's kernel, per group (from its step d)."""
    return SIGMA_DATA * d.abs() + WIDTH_EPS


def laplace_kernel(a: torch.Tensor, b: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """k(a_i, b_j) for the particles of each group: ``a``, ``b`` [G, m, D], ``width`` [G] -> [G, m, m]."""
    sq = (a[:, :, None, :] - b[:, None, :, :]).pow(2).sum(-1)
    distance = (sq * SIGMA_DATA**2).clamp_min(DISTANCE_FLOOR).sqrt() / a.shape[-1]
    return torch.exp(-distance / width[:, None, None].to(distance.dtype))


def mmd2(a: torch.Tensor, b: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """The squared MMD between each group's particles in ``a`` and in ``b`` ([G, m, D]), per group [G]."""
    within_a = laplace_kernel(a, a, width).mean((1, 2))
    within_b = laplace_kernel(b, b, width).mean((1, 2))
    across = laplace_kernel(a, b, width).mean((1, 2))
    return within_a + within_b - 2 * across


@dataclass(kw_only=True)
class IMM(Objective):
    """Inductive Moment Matching: an MMD between the one-jump and two-jump particles of groups of rows.

    See the module docstring for the kernel, the times and the time weight (ESC's port).
    """

    name = "imm"
    title = "IMM"
    recipe_source = (
        'Zhou, Ermon and Song, "Inductive Moment Matching" (2025), as ported by EDAPINENUT/ExplicitShortCut: '
        "loss/imm_loss.py (uniform times, the one sampler it implements; cfg-prob 0.1) and argparse_train.py "
        "(tgt-decay 0: the online network)"
    )
    row_kinds = ("kernel",)
    step_input = "size"  # the interval itself, as the method's own network embeds its second time
    ablations = {
        "no time weight": ("weight_a=0", "weight_b=0"),
        "logit-normal times": LOGIT_NORMAL_TIMES,
        "groups of 2 particles": ("group_size=2",),
    }

    # ESC's port: start times uniform in [time_min, 1], the MMD as it is (mse), the online network's jumps
    recipe: Recipe = Recipe(time_sampler="uniform", target_network="online")
    class_dropout: float = knob(0.1, Float(0.0, 1.0), "probability of the null label on every row")
    group_size: int = knob(4, Int(1), "particles per group: consecutive rows sharing their times")
    gamma: int = knob(12, Int(0), "the intermediate time is n(time_min)/2^gamma of noise-to-signal nearer the data")
    time_min: float = knob(0.006, Float(0.0, 1.0, low_open=True, high_open=True), "earliest start time t")
    weight_a: float = knob(2.0, Float(), "time weight: the exponent a of alpha^a")
    weight_b: float = knob(4.0, Float(), "time weight: the log-SNR shift b of sigmoid(b - logSNR)")
    clip_intermediate: bool = knob(False, Flag(), "keep the intermediate time at or before the end (ESC: false)")

    # ------------------------------------------------------------ rows and cost
    def groups(self, rows: int) -> int:
        """How many groups ``rows`` rows make; ValueError when they are not whole groups."""
        if rows % self.group_size:
            raise ValueError(
                f"IMM forms groups of group_size={self.group_size} consecutive rows, and {rows} rows are not "
                f"whole groups; use a batch (per process and micro-batch) that is a multiple of {self.group_size}"
            )
        return rows // self.group_size

    def kind_rows(self, batch: int) -> tuple[int, ...]:
        """Every row is a particle of a group; ValueError when the batch is not whole groups."""
        self.groups(batch)
        return (batch,)

    def check_micro_batch(self, rows: int) -> None:
        """Each process's micro-batch must hold whole groups (its loss is computed per micro-batch)."""
        self.groups(rows)

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """One target forward per row (the jump from s), then one forward and backward (the jump from t)."""
        return 2.0, 1.0

    # ------------------------------------------------------------ times
    def group_times(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(t, d, s) from the draws a (time sampler) and b (uniform): start, step to the end, intermediate.

        t and d are in the draws' dtype; s is float64 (computed from t as stored).
        """
        t = self.time_min + (1 - self.time_min) * a
        d = b * (1 - t)
        return t, d, self.intermediate_time(t, d)

    def intermediate_time(self, t: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """s with n(s) = max(n(t) - n(time_min) / 2^gamma, 0), in float64; at most t + d with ``clip_intermediate``."""
        t = t.double()
        gap = noise_to_signal(torch.tensor(self.time_min, dtype=torch.float64)) / 2.0**self.gamma
        s = 1 / (1 + (noise_to_signal(t) - gap).clamp_min(0))
        return torch.minimum(s, t + d.double()) if self.clip_intermediate else s

    # ------------------------------------------------------------ targets
    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Draw order after the noise: a time per row, an end per row (a group takes its first row's
        two draws), label dropout per row."""
        m, draws = self.group_size, batch.draws
        self.groups(len(draws))
        a, b = times(self.recipe, draws, self.max_steps), draws.uniform()
        labels = dropped_labels(batch.y, draws, self.class_dropout, self.num_classes)
        t, d, s = self.group_times(a[::m].repeat_interleave(m), b[::m].repeat_interleave(m))
        return self.build(self.recipe.target_net(networks), batch.x0, batch.x1, t, d, s, labels)

    def build(
        self,
        target: Network,
        x0: torch.Tensor,
        x1: torch.Tensor,
        t: torch.Tensor,
        d: torch.Tensor,
        s: torch.Tensor,
        y: torch.Tensor,
    ) -> Targets:
        """Targets for given noise, data, times (start t, step d, intermediate s) and labels: the target
        network's jump from x_s to the end t + d, run in full precision (ESC turns mixed precision off)."""
        x_s = path.interpolate(x0, x1, s)
        step = t.double() + d.double() - s
        with torch.autocast(x1.device.type, enabled=False):
            u = target(x_s, s.to(x1.dtype), step.to(x1.dtype), y).to(x1.dtype)
        x_sr = self.recipe.clamp(x_s + path.expand_like(step, x_s) * u)
        return Targets(path.interpolate(x0, x1, t), t, d, x_sr, y, torch.zeros_like(y))

    # ------------------------------------------------------------ loss
    def group_losses(self, model: nn.Module | Network, targets: Targets) -> tuple[torch.Tensor, torch.Tensor]:
        """(each group's loss: time weight times the loss weight of its MMD^2, each group's plain MMD^2)."""
        m = self.group_size
        groups = self.groups(targets.t.shape[0])
        dtype = torch.promote_types(targets.x_t.dtype, torch.float32)
        pred = model(targets.x_t, targets.t, targets.d, targets.y).to(dtype)
        x_t = targets.x_t.to(dtype)
        x_tr = x_t + path.expand_like(targets.d, x_t) * pred
        width = kernel_width(targets.d[::m].double())
        mmd = mmd2(x_tr.reshape(groups, m, -1), targets.v.to(dtype).reshape(groups, m, -1), width)
        weighted, plain = per_row_loss(self.recipe.loss_weight, mmd[:, None], self.recipe)
        weight = time_weight(targets.t[::m], self.weight_a, self.weight_b).to(dtype)
        return weight * weighted, plain

    def loss(self, model: nn.Module, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mean over groups of their weighted MMD^2; logs: the plain MMD^2 averaged over groups."""
        losses, plain = self.group_losses(model, targets)
        mean = plain.mean()
        return losses.mean(), {"loss": mean, f"loss_{self.row_kinds[0]}": mean}
