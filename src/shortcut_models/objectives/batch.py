"""What an objective is handed and what it returns: the networks that may build targets, the training
progress, the rows of a batch (split by kind), and the targets.

Conventions: t = 0 is noise, t = 1 is data; d is the step size; every network is
``model(x_t, t, d, y)`` with ``y == num_classes`` the null label.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..seeding import RowDraws

Network = Callable[..., torch.Tensor]  # model(x_t, t, d, y) -> velocity


@dataclass(frozen=True)
class TargetNetworks:
    """The networks an objective may build its targets with; None where a run has none.

    online: the network being trained; ema: its exponential moving average; teacher: a frozen
    network the trainer keeps for the objective (the teacher run of the distillation methods,
    progressive distillation's stage teacher).
    """

    online: Network | None = None
    ema: Network | None = None
    teacher: Network | None = None

    @classmethod
    def of(cls, network: Network | TargetNetworks | None) -> TargetNetworks:
        """A bundle as given, or one network standing for every role (convenient in tests)."""
        if isinstance(network, TargetNetworks):
            return network
        return cls(network, network, network)

    def pick(self, role: str) -> Network:
        """The network of ``role`` ("online", "ema" or "teacher"); ValueError when the bundle has none."""
        network = getattr(self, role)
        if network is None:
            raise ValueError(f"this objective needs the {role} network to build its targets, and none was given")
        return network


@dataclass(frozen=True)
class Progress:
    """How far training has come: ``step`` (0-based) of ``total`` steps."""

    step: int = 0
    total: int = 1


@dataclass(frozen=True)
class Batch:
    """The rows an objective builds targets for, split by kind.

    x0: noise; x1: data; y: labels (None: unconditional); draws: every random draw beyond the noise
    (:class:`~shortcut_models.seeding.RowDraws`: made per row of the whole batch, so the rows come out
    the same whichever process holds them); kinds: the draws of each kind's rows, in the order of
    :attr:`~.base.Objective.row_kinds`. The kinds are consecutive blocks of rows, leading kind first:
    the first ``len(kinds[0])`` rows are of kind 0, the next ``len(kinds[1])`` of kind 1, and so on.
    """

    x0: torch.Tensor
    x1: torch.Tensor
    y: torch.Tensor | None
    draws: RowDraws
    kinds: tuple[RowDraws, ...]

    @property
    def device(self) -> torch.device:
        return self.x1.device


@dataclass
class Targets:
    """One training batch, built without gradient; row i comes from data row i.

    x_t: points on the path (t = 0 noise, t = 1 data); t, d: time and step size per row ([B] float);
    v: regression target; y: labels fed to the network (null = num_classes); kind: int64 [B], the
    index in the objective's :attr:`~.base.Objective.row_kinds` of the kind of each row (e.g. shortcut's
    self-consistency rows are kind 0, its flow-matching rows kind 1); guidance: the guidance input
    [B, 3] fed to the network (:mod:`shortcut_models.guidance`; None: the network is called without it).
    """

    x_t: torch.Tensor
    t: torch.Tensor
    d: torch.Tensor
    v: torch.Tensor
    y: torch.Tensor
    kind: torch.Tensor
    guidance: torch.Tensor | None = None

    def split(self, chunks: int) -> list[Targets]:
        """``chunks`` equal row blocks (gradient accumulation)."""
        fields = [f.name for f in dataclasses.fields(self)]
        parts = [[None] * chunks if (v := getattr(self, name)) is None else v.chunk(chunks) for name in fields]
        return [Targets(*(p[i] for p in parts)) for i in range(chunks)]

    def network_kwargs(self) -> dict[str, torch.Tensor]:
        """The keyword arguments of the network call beyond (x_t, t, d, y): the guidance input when there is one."""
        return {} if self.guidance is None else {"guidance": self.guidance}
