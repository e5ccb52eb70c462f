"""The interface every training objective implements, what it returns, and the loss they share.

An objective turns a data batch into regression targets (:meth:`Objective.targets`, no gradient)
and a loss (:meth:`Objective.loss`). It also says which network builds its targets (the teacher),
which leading rows of a batch need that teacher, and which step size a sampler must feed its
trained networks. Conventions: t = 0 is noise, t = 1 is data; d is the step size; every network is
``model(x_t, t, d, y)`` with ``y == num_classes`` the null label.

An objective is a dataclass: its fields other than ``num_classes`` are its *knobs*, the settings a
run configures (``objective_args`` in the training config) and a checkpoint records. Defaults and
range checks live on the dataclass, nowhere else.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..seeding import RowShare


@dataclass
class Targets:
    """One training batch, built without gradient; row i comes from data row i.

    x_t: points on the path (t = 0 noise, t = 1 data); t, d: time and step size per row ([B] float);
    v: regression target (the path velocity on flow rows, the teacher's two-half-step average on
    self-consistency rows); y: labels fed to the network (null = num_classes); bootstrap: bool [B],
    True on the rows built with the teacher.
    """

    x_t: torch.Tensor
    t: torch.Tensor
    d: torch.Tensor
    v: torch.Tensor
    y: torch.Tensor
    bootstrap: torch.Tensor

    def split(self, chunks: int) -> list[Targets]:
        """``chunks`` equal row blocks (gradient accumulation)."""
        fields = [f.name for f in dataclasses.fields(self)]
        parts = [getattr(self, name).chunk(chunks) for name in fields]
        return [Targets(*(p[i] for p in parts)) for i in range(chunks)]


class Objective(ABC):
    """A training objective on the shared network interface ``model(x_t, t, d, y)``.

    Subclasses are dataclasses with a ``num_classes`` field (real classes; ``num_classes`` itself is
    the null label, 0 for unconditional models) and a ``max_steps`` knob (M, the finest step count).
    """

    name: ClassVar[str]  # the registry key, e.g. "shortcut"
    title: ClassVar[str]  # how reports name it, e.g. "flow matching"
    # True: the targets need a trained flow-matching network, the run named by the knob ``teacher``; the
    # trainer loads it (objectives never read checkpoints) and hands it over with :meth:`bind_teacher`
    teacher_run: ClassVar[bool] = False
    num_classes: int
    max_steps: int

    @abstractmethod
    def targets(
        self,
        teacher: nn.Module | None,
        x1: torch.Tensor,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        x0: torch.Tensor | None = None,
        rows: RowShare | None = None,
    ) -> Targets:
        """Targets for the data rows ``x1`` (labels ``y``, None = unconditional), without gradient.

        ``generator`` drives every random draw; ``x0`` is the noise (drawn when None); ``rows`` names the
        rows of a larger global batch that ``x1`` holds (several processes; default: the whole batch).
        """

    def loss(self, model: nn.Module, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean squared error over the batch and its logs (see :func:`regression_loss`)."""
        return regression_loss(model, targets)

    @abstractmethod
    def select_teacher(self, model: nn.Module, ema_model: nn.Module) -> nn.Module | None:
        """The network that builds the targets (None when the targets need no network)."""

    @property
    @abstractmethod
    def sampling_d(self) -> float | None:
        """The step size a sampler feeds this objective's networks (None: the step actually taken)."""

    def sampling_d_at(self, steps: int) -> float | None:
        """The step-size input for sampling in ``steps`` steps (default: :attr:`sampling_d` at every count)."""
        return self.sampling_d

    def teacher_rows(self, batch: int) -> int:
        """How many leading rows of a global batch of ``batch`` rows are built with the teacher."""
        return 0

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """The cost model of one training step of ``batch`` rows: (forward, backward) passes of the
        network per row, teacher passes included. Flow matching is (1, 1)."""
        return 1.0, 1.0

    def step_cost(self, batch: int) -> float:
        """Predicted step time relative to flow matching, a backward pass counted as two forwards."""
        forward, backward = self.passes_per_row(batch)
        return (forward + 2 * backward) / 3

    def begin_step(self, step: int, total_steps: int) -> None:  # noqa: B027 - optional hook, default no-op
        """Called by the trainer before the targets of training step ``step`` (0-based) of ``total_steps``.

        Objectives whose targets follow a schedule over training (a step-size curriculum, distillation
        stages) keep what they need here; the default does nothing.
        """

    def bind_teacher(self, network: nn.Module) -> None:
        """Hand over the teacher network of a ``teacher_run`` objective (loaded by the trainer)."""
        self._bound_teacher = network

    def bound_teacher(self) -> nn.Module:
        """The network given to :meth:`bind_teacher`; ValueError when there is none."""
        network = getattr(self, "_bound_teacher", None)
        if network is None:
            raise ValueError(f"the {self.title} objective needs a teacher network (teacher=RUN)")
        return network

    def teacher_refresh(self, step: int, model: nn.Module, ema_model: nn.Module) -> nn.Module | None:
        """The network whose weights the bound teacher takes before training step ``step`` (None: keep it).

        Progressive distillation replaces its teacher by the student at each stage; the default keeps it.
        """
        return None

    @classmethod
    def knobs(cls) -> tuple[str, ...]:
        """Names of the settings of this objective (every dataclass field but ``num_classes``)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "num_classes")

    def args(self) -> dict[str, Any]:
        """The value of every knob: with ``num_classes`` it rebuilds this objective."""
        return {name: getattr(self, name) for name in self.knobs()}


class EveryRowTeacher(Objective):
    """An objective whose every row is built with the teacher (the consistency and distillation methods)."""

    def teacher_rows(self, batch: int) -> int:
        return batch

    def loss(self, model: nn.Module, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MSE over the batch; logs hold the loss and its self-consistency part (every row)."""
        loss, logs = regression_loss(model, targets)
        logs.pop("loss_flow")
        return loss, logs


def log_weights(rows: int, teacher_rows: int) -> dict[str, float]:
    """How many rows each log of :func:`regression_loss` averages over (for means over steps)."""
    return {"loss": rows, "loss_flow": rows - teacher_rows, "loss_consistency": teacher_rows}


def regression_loss(model: nn.Module, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean squared error over every element of the batch (one mean over all rows).

    The logs hold the loss and its flow and self-consistency parts, each the mean over its own rows
    (NaN where a part has no rows). They are detached tensors, so logging costs no host sync until
    the caller reads them.
    """
    pred = model(targets.x_t, targets.t, targets.d, targets.y)
    per_row = (pred.float() - targets.v.float()).pow(2).flatten(1).mean(dim=1)
    loss = per_row.mean()
    with torch.no_grad():
        mask = targets.bootstrap.to(per_row.dtype)
        n_boot = mask.sum()
        n_flow = mask.numel() - n_boot
        logs = {
            "loss": loss.detach(),
            "loss_flow": (per_row * (1 - mask)).sum() / n_flow,
            "loss_consistency": (per_row * mask).sum() / n_boot,
        }
    return loss, logs
