"""The straight noise-to-data path shared by every objective.

Conventions (used throughout the package):

* ``t = 0`` is pure noise ``x0 ~ N(0, I)``; ``t = 1`` is data ``x1``.
* ``x_t = (1 - (1 - eps) t) x0 + t x1`` with ``eps = 1e-5`` (the authors' choice, which keeps a
  trace of noise at ``t = 1``).
* The velocity along this path is ``v = dx_t/dt = x1 - (1 - eps) x0``; it does not depend on ``t``.
"""

from __future__ import annotations

import torch

EPS = 1e-5


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-row tensor of shape [B] so that it broadcasts against ``like`` ([B, ...])."""
    return t.reshape(t.shape[0], *([1] * (like.ndim - 1))).to(like.dtype)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Point ``x_t`` on the path from noise ``x0`` (t = 0) to data ``x1`` (t = 1); ``t`` has shape [B]."""
    t = _expand(t, x1)
    return (1.0 - (1.0 - EPS) * t) * x0 + t * x1


def velocity(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Velocity target ``x1 - (1 - eps) x0`` of the path (constant in t)."""
    return x1 - (1.0 - EPS) * x0


def expand_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Public form of the per-row broadcast used by the sampler and objectives."""
    return _expand(t, like)
