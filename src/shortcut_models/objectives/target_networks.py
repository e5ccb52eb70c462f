"""The network that builds an objective's targets, and an optional clamp on those targets (a recipe part).

Objectives whose targets come from a network (shortcut's self-consistency rows, the consistency and
distillation methods, live reflow's reflow rows, MeanFlow's derivative) take it from the bundle the
trainer hands them (:class:`~.base.TargetNetworks`) by the knob ``target_network``:

- ``online``: the network being trained (its current weights; no gradient flows through targets);
- ``ema``: the exponential moving average of its weights (lags behind, smoother).

``target_clamp`` > 0 bounds every target built by that network to [-target_clamp, target_clamp]
(0: no bound).

Adding a choice: one line in :data:`TARGET_NETWORKS` naming the role of the bundle it takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..validation import Float, OneOf
from .base import Network, Objective, TargetNetworks, knob

TARGET_NETWORKS: dict[str, str] = {"online": "online", "ema": "ema"}  # knob value -> role in the bundle


@dataclass(kw_only=True)
class TargetNetworkKnobs(Objective):
    """An objective whose targets come from a network: adds ``target_network`` and ``target_clamp``."""

    target_network: str = knob("ema", OneOf(TARGET_NETWORKS), "the network that builds targets")
    target_clamp: float = knob(0.0, Float(0.0), "bound on the targets that network builds (0: none)")

    def target_net(self, networks: TargetNetworks) -> Network:
        """The network of the bundle named by ``target_network``."""
        return networks.pick(TARGET_NETWORKS[self.target_network])

    def clamp_target(self, v: torch.Tensor) -> torch.Tensor:
        """``v`` bounded to [-target_clamp, target_clamp] (unchanged when target_clamp is 0)."""
        return v.clamp(-self.target_clamp, self.target_clamp) if self.target_clamp > 0 else v
