"""Jacobian-vector products of a network, for the objectives whose targets need the network's derivative.

``network_jvp(network, (x, t, d, y), (dx, dt, dd))`` is the derivative of ``network(x, t, d, y)`` along
the tangent (labels have none); ``network_jvp_with_output`` also returns the network's output, which the
product computes anyway. A network that carries tangents itself (a ``jvp(primals, tangents)`` method,
as the DiT has: its layers on the (primal, tangent) pairs of models/primitives.py) does it in one pass
of its own; any other network goes through ``torch.func.jvp``. Wrappers are looked through: DDP's
``module`` and ``torch.compile``'s ``_orig_mod`` (the product needs no gradient synchronisation and runs
uncompiled).

Attention under ``torch.func.jvp``: forward-mode AD has no rule for PyTorch's fused attention kernels
(flash, memory-efficient, the CPU flash kernel), so that path always runs with the math kernel of
scaled_dot_product_attention; the DiT's own product forms the attention probabilities itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

Primals = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x, t, d, y
Tangents = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # dx, dt, dd


def unwrapped(network: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """The network inside DDP and ``torch.compile`` wrappers."""
    while True:
        inner = getattr(network, "module", None) or getattr(network, "_orig_mod", None)
        if inner is None:
            return network
        network = inner


def network_jvp(
    network: Callable[..., torch.Tensor], primals: Primals, tangents: Tangents, **network_kwargs: torch.Tensor
) -> torch.Tensor:
    """d network(x, t, d, y, **network_kwargs) along (dx, dt, dd), in the dtype of x; the keyword inputs
    (the guidance input of iMF's networks) have no tangent."""
    return network_jvp_with_output(network, primals, tangents, **network_kwargs)[1]


def network_jvp_with_output(
    network: Callable[..., torch.Tensor], primals: Primals, tangents: Tangents, **network_kwargs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(network(x, t, d, y, **network_kwargs), its derivative along (dx, dt, dd)) from the one product,
    both in the dtype of x."""
    x, t, d, y = primals
    own = getattr(unwrapped(network), "jvp", None)
    if own is not None:
        out, tangent = own(primals, tangents, **network_kwargs)
    else:
        with sdpa_kernel([SDPBackend.MATH]):
            out, tangent = jvp(lambda a, b, c: network(a, b, c, y, **network_kwargs), (x, t, d), tangents)
    return out.to(x.dtype), tangent.to(x.dtype)
