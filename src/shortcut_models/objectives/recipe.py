"""The recipe: how a method is trained apart from what it computes, a value each method holds.

Three parts, each usable by every method (so a comparison can hold the recipe fixed and change the
method, or the reverse):

- the time sampler: where on the path rows are trained (``time_sampler``, with ``time_mu`` and
  ``time_sigma`` for the logit-normal one; :mod:`.time_samplers`);
- the loss weight: how each row's squared error becomes its loss (``loss_weight``, with
  ``adaptive_power``, ``adaptive_eps`` and ``huber_c``; :mod:`.loss_weights`);
- the target network: for methods whose targets come from a network, which network of the bundle
  the trainer hands over builds them (``target_network``: ``online``, the network being trained, or
  ``ema``, the moving average of its weights) and a bound on those targets (``target_clamp``, 0: none).
  A method whose targets come from no network (flow matching) has ``target_network=None``, and then
  neither setting is a knob of it.

A method writes its own recipe in its file (``recipe: Recipe = Recipe(loss_weight="adaptive", ...)``);
the defaults below are the plain recipe: grid times, the mean squared error. The configuration sets
the recipe's settings flat, as knobs of the method (``time_sampler=uniform``), like its own knobs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..validation import Float, OneOf
from .batch import Network, TargetNetworks
from .knobs import check_knobs, knob, knob_docs, knob_fields
from .loss_weights import LOSS_WEIGHTS
from .time_samplers import TIME_SAMPLERS

TARGET_NETWORKS: dict[str, str] = {"online": "online", "ema": "ema"}  # knob value -> role in the bundle
TARGET_NETWORK_KNOBS = ("target_network", "target_clamp")
# the overrides of MeanFlow's logit-normal times, sigmoid(0.4 + n): an ablation and a recipe of the study
LOGIT_NORMAL_TIMES = ("time_sampler=logit-normal", "time_mu=0.4", "time_sigma=1.0")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A method's time sampler, loss weight and target network, with their settings (see the module docstring)."""

    time_sampler: str = knob("grid", OneOf(TIME_SAMPLERS), "where on the path rows are trained (time samplers)")
    time_mu: float = knob(0.4, Float(), "logit-normal sampler: mean of the logit (t = 0 noise; MeanFlow's 0.4)")
    time_sigma: float = knob(1.0, Float(0.0, low_open=True), "logit-normal sampler: spread of the logit")
    loss_weight: str = knob("mse", OneOf(LOSS_WEIGHTS), "how each row's squared error becomes its loss")
    adaptive_power: float = knob(1.0, Float(0.0), "adaptive weight: p of 1 / (loss + eps)^p (0: sum of squares)")
    adaptive_eps: float = knob(1e-3, Float(0.0, low_open=True), "adaptive weight: eps")
    huber_c: float = knob(0.00054, Float(0.0, low_open=True), "pseudo-Huber: c per square root of a row's size")
    target_network: str | None = knob(None, OneOf(TARGET_NETWORKS), "the network that builds targets")
    target_clamp: float = knob(0.0, Float(0.0), "bound on the targets that network builds (0: none)")

    def __post_init__(self) -> None:
        """Range checks of every setting (ValueError naming it)."""
        check_knobs(self, self.knobs())

    def knobs(self) -> tuple[str, ...]:
        """The settings of this recipe that are knobs: all, less the target network's where there is none."""
        names = knob_fields(Recipe)
        return names if self.target_network is not None else tuple(n for n in names if n not in TARGET_NETWORK_KNOBS)

    def args(self) -> dict[str, Any]:
        """The value of each knob (what a checkpoint records)."""
        return {name: getattr(self, name) for name in self.knobs()}

    def knob_docs(self) -> dict[str, tuple[str, str]]:
        """Each knob -> (what it means, its allowed values in words)."""
        return knob_docs(Recipe, self.knobs())

    def with_knobs(self, **knobs: Any) -> Recipe:
        """This recipe with some settings changed (checked); TypeError naming one that is not a knob of it."""
        unknown = sorted(set(knobs) - set(self.knobs()))
        if unknown:
            raise TypeError(f"not a knob of this recipe: {', '.join(unknown)}")
        return dataclasses.replace(self, **knobs)

    def target_net(self, networks: TargetNetworks) -> Network:
        """The network of the bundle named by ``target_network``."""
        return networks.pick(TARGET_NETWORKS[self.target_network])

    def clamp(self, v: torch.Tensor) -> torch.Tensor:
        """``v`` bounded to [-target_clamp, target_clamp] (unchanged when target_clamp is 0)."""
        return v.clamp(-self.target_clamp, self.target_clamp) if self.target_clamp > 0 else v
