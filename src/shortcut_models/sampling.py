"""Euler sampling from t = 0 (noise) to t = 1 (data) in any number of steps from 1 to M = 128.

For N a power of two the schedule is N equal steps of d = 1/N at t_i = i/N, as in the paper. For
other N the schedule is made of two power-of-two sizes: with p = 2^floor(log2 N), it takes
``2p - N`` steps of 1/p first (near noise), then ``2N - 2p`` steps of 1/(2p) (near data); e.g.
N = 3 -> 1/2, 1/4, 1/4 and N = 6 -> 1/4, 1/4, 1/8, 1/8, 1/8, 1/8. Every step starts on the grid of
its own size, which is where the shortcut objective trains it, and the sizes sum to exactly 1.

A flow-matching network was trained only at d = 1/M: pass ``fixed_d=1/M`` (the objective's
``sampling_d``) so its step-size input stays there while the Euler step uses the scheduled size.

Classifier-free guidance: v = v_uncond + w (v_cond - v_uncond), both branches in one batched call.
A network with the guidance input (``model.guidance_input``, iMF) learned the guided velocity: it gets
w and the guidance interval as its input (:mod:`.guidance`), one network call per step whatever w.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch import nn

from . import guidance as guide
from .runtime import to_device

MAX_STEPS = 128


def check_steps(steps: object, max_steps: int = MAX_STEPS) -> int:
    """Return ``steps`` as an int, or raise ValueError saying what is allowed."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        if isinstance(steps, float) and steps.is_integer():
            steps = int(steps)
        else:
            raise ValueError(f"steps must be an integer from 1 to {max_steps}, got {steps!r}")
    steps = int(steps)
    if not 1 <= steps <= max_steps:
        raise ValueError(f"steps must be an integer from 1 to {max_steps}, got {steps}")
    return steps


def step_schedule(steps: int, max_steps: int = MAX_STEPS) -> list[float]:
    """Step sizes (powers of two, summing to 1) for ``steps`` Euler steps; see the module docstring."""
    n = check_steps(steps, max_steps)
    p = 1 << (n.bit_length() - 1)
    if p == n:
        return [1.0 / n] * n
    return [1.0 / p] * (2 * p - n) + [1.0 / (2 * p)] * (2 * n - 2 * p)


def step_starts(sizes: list[float]) -> list[float]:
    """The time each step of a schedule starts at: 0, then the running sum of the sizes before it."""
    return [sum(sizes[:i]) for i in range(len(sizes))]


def step_inputs(sizes: list[float], fixed_d: float | None = None) -> list[float]:
    """The step-size input the network gets at each step: the size taken, or ``fixed_d`` at every step."""
    return list(sizes) if fixed_d is None else [fixed_d] * len(sizes)


@dataclass(frozen=True, eq=False)
class GuidedVelocity:
    """The velocity of one batch of B samples, under classifier-free guidance as the network was trained for it.

    Build it with :meth:`build`; ``velocity(x, t, d)`` calls the network once for a step at time ``t`` with
    step-size input ``d`` (0-dim tensors): rows [cond; uncond] in one batched call when guided without the
    guidance input (``two_branches``), one call otherwise (iMF's networks take the guidance as ``inputs``).
    """

    model: nn.Module
    labels: torch.Tensor  # [rows] int64: y, or [y; null] with two branches
    scale: float
    two_branches: bool
    inputs: dict[str, torch.Tensor]
    ones: torch.Tensor  # [rows]: t and d are broadcast to every row

    @classmethod
    def build(
        cls,
        model: nn.Module,
        batch: int,
        device: torch.device,
        y: torch.Tensor | None = None,
        cfg_scale: float = 1.0,
        cfg_interval: tuple[float, float] = guide.EVERYWHERE,
    ) -> GuidedVelocity:
        """The calls of ``model`` (``model.num_classes`` is the null label) for ``batch`` samples with labels
        ``y`` (None: the null label everywhere); ValueError for a bad ``y``, scale or interval (see :func:`sample`)."""
        null = torch.full((batch,), getattr(model, "num_classes", 0), dtype=torch.long, device=device)
        y = null if y is None else y.to(device=device, dtype=torch.long)
        if y.shape != (batch,):
            raise ValueError(f"y must have shape [{batch}], got {tuple(y.shape)}")
        lo, hi = guide.check_interval(*cfg_interval)
        as_input = bool(getattr(model, "guidance_input", False))
        if not as_input and (lo, hi) != guide.EVERYWHERE:
            raise ValueError("a guidance interval needs a network with the guidance input (trained by iMF)")
        if as_input and not cfg_scale > 0:
            raise ValueError(
                f"a network with the guidance input needs cfg_scale > 0 (it was trained on w >= 1), got {cfg_scale}"
            )
        inputs = {"guidance": guide.rows(cfg_scale, lo, hi, batch, device)} if as_input else {}
        two = cfg_scale != 1.0 and not as_input  # both branches in one batched call: rows [cond; uncond]
        labels = torch.cat([y, null]) if two else y  # built once, not per step
        return cls(model, labels, cfg_scale, two, inputs, torch.ones(len(labels), device=device))

    def __call__(self, x: torch.Tensor, t: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """The (guided) velocity at ``x`` [B, ...], time ``t`` and step-size input ``d``."""
        out = self.model(
            torch.cat([x, x]) if self.two_branches else x, self.ones * t, self.ones * d, self.labels, **self.inputs
        )
        if self.two_branches:
            v_cond, v_uncond = out.chunk(2)
            out = v_uncond + self.scale * (v_cond - v_uncond)
        return out


@torch.inference_mode()
def sample(
    model: nn.Module,
    noise: torch.Tensor,
    steps: int,
    y: torch.Tensor | None = None,
    cfg_scale: float = 1.0,
    fixed_d: float | None = None,
    max_steps: int = MAX_STEPS,
    cfg_interval: tuple[float, float] = guide.EVERYWHERE,
) -> torch.Tensor:
    """Integrate ``dx/dt = model(x, t, d, y)`` from noise (t = 0) to data (t = 1) by Euler steps.

    Args:
        model: network called as ``model(x, t, d, y)``; ``model.num_classes`` is the null label.
        noise: x0 ~ N(0, I), shape [B, ...]; the result has the same shape and dtype.
        steps: any integer from 1 to ``max_steps``; non-powers of two use the two-size schedule.
        y: int64 labels [B], or None for the null label everywhere (unconditional).
        cfg_scale: guidance weight w; 1 disables guidance (one network call per step). A network with
            the guidance input takes it as input (one call per step); others get two branches per step.
        fixed_d: hold the network's step-size input at this value (1/M for flow-matching models).
        cfg_interval: the times [lo, hi] where guidance applies, for networks with the guidance input
            (ValueError for others when not [0, 1]).
    """
    sizes = step_schedule(steps, max_steps)
    velocity = GuidedVelocity.build(model, noise.shape[0], noise.device, y, cfg_scale, cfg_interval)
    # per-step t and d as one tensor each, copied without a host sync; no Python work per sample
    t_all = to_device(torch.tensor(step_starts(sizes), dtype=torch.float32), noise.device)
    d_all = to_device(torch.tensor(step_inputs(sizes, fixed_d), dtype=torch.float32), noise.device)
    x = noise.clone()
    for i, size in enumerate(sizes):
        x = x + size * velocity(x, t_all[i], d_all[i]).to(x.dtype)
    return x
