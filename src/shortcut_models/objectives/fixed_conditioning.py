"""A network called several times in turn, each call at a conditioning known before the first.

``calls_at(network, conditions)`` returns one function per (t, d, y) in ``conditions``, each
``x -> network(x, t, d, y)``. The calls must still be made in turn, each on the last one's result (a
teacher's sampling steps, or shortcut's two half steps), but their conditioning does not depend on x: a
network that can compute it ahead (``modulation`` and ``forward_modulated``, as the DiT: models/dit.py)
computes that of every call in one pass of its conditioning layers, over all the calls' rows at once.
The numbers are those of the plain calls; what changes is that a few small passes (e.g. live reflow's 8
steps on an eighth of the batch) run fewer, larger operations. ``calls_at_times`` is the common case of
calls that differ only in their time.

A network inside ``torch.compile`` is called as it is (its compiled forward), as is any network
without the two methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from itertools import accumulate

import torch

from .batch import Network

Call = Callable[[torch.Tensor], torch.Tensor]  # x -> the network's output at a fixed (t, d, y)
Condition = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (t, d, y) of one call, each [B_i]
# [(t, d), ...] -> [x -> velocity at (t, d), ...]: calls known ahead, made in turn (a teacher at fixed labels)
Velocities = Callable[[Sequence[tuple[torch.Tensor, torch.Tensor]]], list[Call]]


def calls_at(network: Network, conditions: Sequence[Condition]) -> list[Call]:
    """``[x -> network(x, t, d, y) for (t, d, y) in conditions]``; call i takes x of ``t.shape[0]`` rows."""
    forward = None if hasattr(network, "_orig_mod") else getattr(network, "forward_modulated", None)
    if forward is None:
        return [lambda x, c=c: network(x, *c) for c in conditions]
    t, d, y = (torch.cat(parts) for parts in zip(*conditions))
    ahead = network.modulation(t, d, y)
    sizes = [c[0].shape[0] for c in conditions]
    return [partial(forward, modulation=ahead.rows(a, a + n)) for a, n in zip(accumulate(sizes, initial=0), sizes)]


def velocities_at(network: Network, y: torch.Tensor, dtype: torch.dtype) -> Velocities:
    """``[(t, d), ...] -> [x -> network(x, t, d, y) as dtype, ...]`` through :func:`calls_at`: a teacher's
    velocities at labels ``y`` [B] (the two half steps of :func:`.schedule.two_half_steps`)."""

    def velocities(times_and_sizes: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[Call]:
        calls = calls_at(network, [(t, d, y) for t, d in times_and_sizes])
        return [lambda x, call=call: call(x).to(dtype) for call in calls]

    return velocities


def calls_at_times(network: Network, times: Sequence[float], d: torch.Tensor, y: torch.Tensor) -> list[Call]:
    """``[x -> network(x, s, d, y) for s in times]``, the time ``s`` the same on every row; ``d`` and
    ``y`` [B] are the same in every call."""
    return calls_at(network, [(torch.full_like(d, s), d, y) for s in times])
