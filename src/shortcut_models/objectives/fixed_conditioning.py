"""A network called at a fixed sequence of times, as a teacher taking sampling steps is.

``calls_at_times(network, times, d, y)`` returns one function per time ``s`` in ``times``, each
``x -> network(x, s, d, y)`` (the time the same on every row). The calls must still be made in turn,
each on the last one's result, but their conditioning does not depend on x: a network that can compute
it ahead (``modulation`` and ``forward_modulated``, as the DiT: models/dit.py) computes that of every
call in one pass of its conditioning layers, over all the calls' rows at once. The numbers are those
of the plain calls; what changes is that a few small passes (e.g. live reflow's 8 steps on an eighth
of the batch) run fewer, larger operations.

A network inside ``torch.compile`` is called as it is (its compiled forward), as is any network
without the two methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch

from .base import Network

Call = Callable[[torch.Tensor], torch.Tensor]  # x -> the network's output at fixed (t, d, y)


def calls_at_times(network: Network, times: Sequence[float], d: torch.Tensor, y: torch.Tensor) -> list[Call]:
    """``[x -> network(x, s, d, y) for s in times]``; ``d`` and ``y`` [B] are the same in every call."""
    rows = d.shape[0]
    t = [torch.full_like(d, s) for s in times]
    forward = None if hasattr(network, "_orig_mod") else getattr(network, "forward_modulated", None)
    if forward is None:
        return [lambda x, s=s: network(x, s, d, y) for s in t]
    ahead = network.modulation(torch.cat(t), d.repeat(len(t)), y.repeat(len(t)))
    return [partial(forward, modulation=ahead.rows(i * rows, (i + 1) * rows)) for i in range(len(t))]
