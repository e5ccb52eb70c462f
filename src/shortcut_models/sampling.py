"""Euler sampling from t = 0 (noise) to t = 1 (data) in any number of steps from 1 to M = 128.

For N a power of two the schedule is N equal steps of d = 1/N at t_i = i/N, as in the paper. For
other N the schedule is made of two power-of-two sizes: with p = 2^floor(log2 N), it takes
``2p - N`` steps of 1/p first (near noise), then ``2N - 2p`` steps of 1/(2p) (near data); e.g.
N = 3 -> 1/2, 1/4, 1/4 and N = 6 -> 1/4, 1/4, 1/8, 1/8, 1/8, 1/8. Every step starts on the grid of
its own size, which is where the shortcut objective trains it, and the sizes sum to exactly 1.

A flow-matching network was trained only at d = 1/M: pass ``fixed_d=1/M`` (the objective's
``sampling_d``) so its step-size input stays there while the Euler step uses the scheduled size.

The re-noising sampler (:func:`renoising_sample`, ``shortcut sample --sampler renoise``), for any network that
jumps from t to the data end (d = 1 - t): each step jumps to the data end, and the next step starts at its
own time on the path from fresh noise to that estimate; the last jump's estimate is the sample. One step is
the Euler sampler's one step. Its start times are i/N by default (:func:`renoise_starts`), SoFlow's authors'
(two steps: jump, re-noise to t = 0.5, jump); α-Flow's authors re-noise their XL/2 model at t = 0.45 here.

Classifier-free guidance: v = v_uncond + w (v_cond - v_uncond), both branches in one batched call.
A network with the guidance input (``model.guidance_input``, iMF) learned the guided velocity: it gets
w and the guidance interval as its input (:mod:`.guidance`), one network call per step whatever w.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import guidance as guide
from . import path
from .runtime import to_device

MAX_STEPS = 128
SAMPLERS = ("euler", "renoise")  # the Euler sampler (the default), the re-noising sampler


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


def renoise_starts(steps: int, at: Sequence[float] = ()) -> list[float]:
    """The start times of the re-noising sampler's ``steps`` jumps: 0, then ``at``, the N - 1 later start times
    (increasing, in (0, 1)); without ``at``, i/N, SoFlow's inference script's times 1 - i/N in our time (two
    steps: 0 and 0.5; α-Flow's XL/2 two-step time is 0.45 here). ValueError otherwise."""
    n = check_steps(steps)
    if not at:
        return [i / n for i in range(n)]
    times = [float(a) for a in at]
    if len(times) != n - 1:
        raise ValueError(f"{n} step(s) re-noise at {n - 1} time(s) after the first jump, got {len(times)}: {times}")
    starts = [0.0, *times]
    if not all(math.isfinite(a) for a in times) or any(b <= a for a, b in zip(starts, starts[1:])) or starts[-1] >= 1:
        raise ValueError(f"the re-noising times must increase within (0, 1) (t = 0 noise, 1 data), got {times}")
    return starts


@torch.inference_mode()
def renoising_sample(
    model: nn.Module,
    noise: torch.Tensor,
    starts: Sequence[float],
    y: torch.Tensor | None = None,
    fresh: Sequence[torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    cfg_scale: float = 1.0,
    fixed_d: float | None = None,
    cfg_interval: tuple[float, float] = guide.EVERYWHERE,
) -> torch.Tensor:
    """The re-noising sampler (t = 0 noise, t = 1 data): from x = ``noise`` at starts[0] = 0, each step jumps to
    the data end, x1_hat = x + (1 - t) u(x, t, 1 - t), and the next step starts at its time t' on the path from
    fresh noise z to that estimate, x = (1 - (1 - eps) t') z + t' x1_hat; returns the last jump's x1_hat.

    ``starts``: increasing in [0, 1), starting at 0 (:func:`renoise_starts`); ``fresh``: the fresh noise of each
    re-noising (len(starts) - 1 tensors shaped as ``noise``), drawn from ``generator`` when None; ``fixed_d``:
    hold the step-size input there (1/M for flow-matching models) instead of the jump's 1 - t. ``y``,
    ``cfg_scale``, ``cfg_interval``: as :func:`sample`."""
    starts = [float(t) for t in starts]
    if not starts or starts[0] != 0.0 or any(b <= a for a, b in zip(starts, starts[1:])) or starts[-1] >= 1.0:
        raise ValueError(f"times must start at 0 and increase below 1, got {starts}")
    if fresh is not None and len(fresh) != len(starts) - 1:
        raise ValueError(f"{len(starts) - 1} fresh noise tensor(s) needed, got {len(fresh)}")
    velocity = GuidedVelocity.build(model, noise.shape[0], noise.device, y, cfg_scale, cfg_interval)
    rows = torch.ones(noise.shape[0], device=noise.device, dtype=noise.dtype)  # the path's mix in the noise's dtype
    x1_hat = noise.clone()
    x = noise
    for k, t in enumerate(starts):
        if k:
            z = fresh[k - 1] if fresh is not None else None
            if z is None:
                z = torch.randn(noise.shape, generator=generator, device=noise.device, dtype=noise.dtype)
            x = path.interpolate(z.to(noise.dtype), x1_hat, rows * t)
        d = 1.0 - t if fixed_d is None else fixed_d
        time, size = (torch.tensor(v, device=noise.device) for v in (t, d))
        x1_hat = x + (1.0 - t) * velocity(x, time, size).to(x.dtype)
    return x1_hat
