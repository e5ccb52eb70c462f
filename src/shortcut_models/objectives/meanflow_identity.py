"""The MeanFlow identity, shared by the methods that train the average velocity over an interval
(MeanFlow, ESC, iMF, sCT).

The network u(x_t, t, d) predicts the average velocity over [t, t + d] (t = 0 noise, t = 1 data):
d u = the displacement of the flow from t to t + d. Differentiating d u(x_t, t, e - t) = int_t^e v ds in
t with the end e = t + d held fixed gives

    u = v + d * D u,   D u = (du/dt along the path, end fixed) = du/dx . v + du/dt - du/dd,

where v is the velocity the point moves with (the path velocity for MeanFlow, the predicted one for
iMF). D u is one forward-mode product of the network with tangent (v, 1, -1) (:mod:`.forward_mode`).
"""

from __future__ import annotations

import torch

from .. import path
from .batch import Network
from .forward_mode import network_jvp


def path_derivative(
    model: Network,
    x_t: torch.Tensor,
    t: torch.Tensor,
    d: torch.Tensor,
    v: torch.Tensor,
    y: torch.Tensor,
    **network_kwargs: torch.Tensor,
) -> torch.Tensor:
    """D u = du/dx . v + du/dt - du/dd of ``u = model(x, t, d, y, **network_kwargs)`` at (x_t, t, d), the end
    t + d held fixed and the point moving with velocity ``v``: one Jacobian-vector product (:mod:`.forward_mode`)."""
    return network_jvp(model, (x_t, t, d, y), (v, torch.ones_like(t), -torch.ones_like(d)), **network_kwargs)


def identity_target(
    model: Network, x_t: torch.Tensor, t: torch.Tensor, d: torch.Tensor, v: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """v + d * D u: the right-hand side of the identity at given points, times, step sizes and velocities
    (stopped: no gradient flows through it)."""
    du = path_derivative(model, x_t, t, d, v, y)
    return (v + path.expand_like(d, v) * du).detach()
