"""Pieces shared by the objectives that follow a schedule over training, step twice or jump to the data.

Conventions: t = 0 noise, t = 1 data; d is a step size; level k means d = 2^-k; M = max_steps and
K = log2 M (the flow level, d = 1/M).
"""

from __future__ import annotations

import torch

from .. import path
from .fixed_conditioning import Velocities


def num_levels(max_steps: int) -> int:
    """K = log2 M."""
    return max_steps.bit_length() - 1


def section(step: int, total_steps: int, sections: int) -> int:
    """Which of ``sections`` equal parts of a ``total_steps``-step run step ``step`` (0-based) is in.

    Equals the authors' ``floor(step / (total_steps / sections))`` (computed in integers), capped at
    the last section.
    """
    return min(sections - 1, (step * sections) // max(total_steps, 1))


def warmup(step: int, steps: int) -> float:
    """A factor that grows linearly from 0 at step 0 to 1 at step ``steps`` and stays there: min(1, step /
    steps); 1 throughout when ``steps`` is 0 (ESC's and sCT's derivative warm-up)."""
    if steps == 0:
        return 1.0
    return min(1.0, step / steps)


def consistency_velocity(
    x_t: torch.Tensor, t: torch.Tensor, x_next: torch.Tensor, t_next: torch.Tensor, v_next: torch.Tensor
) -> torch.Tensor:
    """The velocity that carries ``x_t`` (time t) in one straight jump to the data predicted from a
    later point: x1_hat = x_next + (1 - t_next) v_next, target = (x1_hat - x_t) / (1 - t)."""
    x1_hat = x_next + path.expand_like(1 - t_next, x_next) * v_next
    return (x1_hat - x_t) / path.expand_like(1 - t, x_t)


def two_half_steps(
    velocities: Velocities, x_t: torch.Tensor, t: torch.Tensor, d: torch.Tensor, clip: float
) -> torch.Tensor:
    """The velocity of one step of size d that lands where two half steps land: with h = d / 2 and
    ``v_first, v_second = velocities([(t, h), (t + h, h)])``, v1 = v_first(x_t),
    x' = clip(x_t + h v1, -clip, clip), v2 = v_second(x'); (v1 + v2) / 2.

    Shortcut's self-consistency target and progressive distillation's target (the authors' code)."""
    half = d / 2
    first, second = velocities([(t, half), (t + half, half)])
    v1 = first(x_t)
    x_mid = (x_t + path.expand_like(half, x_t) * v1).clamp(-clip, clip)
    v2 = second(x_mid)
    return (v1 + v2) / 2
