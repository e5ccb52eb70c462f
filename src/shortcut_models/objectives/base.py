"""The interface every training objective implements.

An objective turns a data batch into regression targets (:meth:`Objective.targets`, no gradient)
and a loss (:meth:`Objective.loss`). Everything it needs is handed to it: the networks that may
build targets (:class:`~.batch.TargetNetworks`), how far training has come (:class:`~.batch.Progress`)
and its rows, split by kind (:class:`~.batch.Batch`), so an objective keeps no state between calls
and never deals with processes. Conventions: t = 0 is noise, t = 1 is data; d is the step size; every
network is ``model(x_t, t, d, y)`` with ``y == num_classes`` the null label.

A method is one dataclass, read top to bottom in its own file: what it is (class attributes: its
name, its kinds of rows, what the study needs to know of it), its knobs with their defaults (its
recipe, :class:`~.recipe.Recipe`, and its own fields made by :func:`~.knobs.knob`), then its maths
(:meth:`Objective.build_targets` and the hooks below it overrides). Shared pieces are functions it
calls by name (time samplers, labels, the path, the MeanFlow identity, two half steps), not behaviour
it inherits. Every knob is recorded by a checkpoint, so a checkpoint samples with the values it was
trained with, whatever the defaults of a later release.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..seeding import RowDraws, RowShare
from ..validation import Int, PowerOfTwo, check_int
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .knobs import check_knobs, knob, knob_docs, knob_fields
from .loss_weights import per_row_loss
from .recipe import Recipe


@dataclass(kw_only=True)
class Objective(ABC):
    """A training objective on the shared network interface ``model(x_t, t, d, y)``.

    Fields: ``num_classes``, the real classes (label ``num_classes`` is the null label; 0:
    unconditional), from the data; ``max_steps``, M, the finest step count (a knob of every objective);
    ``recipe``, the method's time sampler, loss weight and target network (each method sets its own).

    Class attributes a method sets (defaults below):

    - ``name``, ``title``: its registry key and how reports name it;
    - ``recipe_source``: where its defaults (its recipe, label dropout, step-size input) come from: the
      paper and the file of its authors' code (or of the port) they follow; the study's report lists it
      ("": none declared, as for an objective of one's own);
    - ``row_kinds``: the kinds of rows a batch holds, in batch order (leading rows first); logs are per
      kind, and :meth:`kind_rows` says how many of each;
    - ``min_max_steps``: the smallest M it allows;
    - ``step_input``: what the network's step-size embedder sees in a new run that does not choose
      (``model_args.step_input``): "level" (-log2 d, the authors' shortcut DiT) or "size" (d itself,
      continuous at d = 0, as the interval methods' own networks embed t - r). A resumed run keeps what
      its checkpoint recorded, a fine-tuning run its source's (``shortcut_models.training.networks``);
    - ``guidance_input``: the network takes the guidance scale and interval as an input (iMF);
    - ``teacher_run``, ``teacher_objective``: the targets need a trained network, the run named by the
      knob ``teacher``, trained with objective ``teacher_objective``; the trainer loads it (objectives never
      read checkpoints: ``shortcut_models.training.teacher``) and hands it over as ``TargetNetworks.teacher``;
    - ``starts_from``: the objective of the runs the method is meant to fine-tune (``init_from``; Decoupled
      MeanFlow: flow matching), where it can also train from scratch (None: from scratch);

    and what the study (``shortcut_models.experiments``) needs to know of it:

    - ``schedule_knob``: a knob counting training steps, set by its authors for runs of hundreds of
      thousands of steps, that the study scales to its budget (None: none);
    - ``schedule_spans_run``: its schedule is spread over the run's length, so a shorter budget is a run
      of its own, not a point on the way of a longer one;
    - ``ablations``: components of its recipe switched off one at a time (name -> knob overrides).
    """

    num_classes: int = knob(0, Int(0), "real classes; label num_classes is the null label (0: unconditional)")
    max_steps: int = knob(128, PowerOfTwo(), "M, the finest step count (d = 1/M at the flow level)")
    recipe: Recipe  # each method writes its own in its file

    name: ClassVar[str]
    title: ClassVar[str]
    recipe_source: ClassVar[str] = ""
    row_kinds: ClassVar[tuple[str, ...]] = ("flow",)
    min_max_steps: ClassVar[int] = 1
    step_input: ClassVar[str] = "level"
    guidance_input: ClassVar[bool] = False
    teacher_run: ClassVar[bool] = False
    teacher_objective: ClassVar[str | None] = None
    starts_from: ClassVar[str | None] = None
    schedule_knob: ClassVar[str | None] = None
    schedule_spans_run: ClassVar[bool] = False
    ablations: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __post_init__(self) -> None:
        """Range checks of every knob (ValueError naming the knob); the recipe checks its own, and has a target
        network exactly where the method's own recipe has one (its knobs are the method's)."""
        check_knobs(self, ("num_classes", "max_steps", *self.own_knobs()))
        check_int(f"max_steps of {self.title}", self.max_steps, low=self.min_max_steps)
        if self.recipe.knobs() != type(self).recipe.knobs():
            has = "a target network" if type(self).recipe.target_network is not None else "no target network"
            raise ValueError(f"{self.title} has {has}: its recipe must say so (target_network)")

    # ------------------------------------------------------------ targets
    @torch.no_grad()
    def targets(
        self,
        networks: TargetNetworks | Network | None,
        x1: torch.Tensor,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: Progress | None = None,
        x0: torch.Tensor | None = None,
        rows: RowShare | None = None,
    ) -> Targets:
        """Targets for the data rows ``x1`` (labels ``y``, None = unconditional), without gradient.

        ``networks``: the networks that may build targets (one network stands for every role);
        ``generator`` drives every random draw; ``progress``: the training step (curricula and
        stages follow it; default step 0 of 1); ``x0`` is the noise (drawn first when None);
        ``rows`` names the rows of a larger global batch that ``x1`` holds (several processes;
        default: the whole batch). The kinds of rows are those of the global batch (:meth:`kind_rows`);
        :meth:`build_targets` gets the rows held here of each.
        """
        draws = RowDraws.for_batch(x1.shape[0], generator, x1.device, rows)
        x0 = draws.normal(tuple(x1.shape[1:]), x1.dtype) if x0 is None else x0
        batch = Batch(x0, x1, y, draws, draws.blocks(self.kind_rows(draws.total)))
        return self.build_targets(TargetNetworks.of(networks), batch, progress or Progress())

    @abstractmethod
    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Targets for the rows of ``batch``; every random draw beyond the noise comes from its draws."""

    # ------------------------------------------------------------ loss
    def loss(self, model: nn.Module, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of ``model`` on ``targets`` (rows weighted by the recipe's loss weight, then averaged)
        and its logs.

        Logs are detached tensors, so logging costs no host sync until the caller reads them:
        ``loss`` is the plain mean squared error over the batch (comparable whatever the loss
        weight), ``loss_<kind>`` the same over each kind of row (NaN where a kind has no rows).
        """
        pred = model(targets.x_t, targets.t, targets.d, targets.y, **targets.network_kwargs())
        sq = (pred.float() - targets.v.float()).pow(2).flatten(1)
        per_row, mse = per_row_loss(self.recipe.loss_weight, sq, self.recipe)
        loss = per_row.mean()
        return loss, self.loss_logs(mse, targets.kind)

    @torch.no_grad()
    def loss_logs(self, mse: torch.Tensor, kind: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a step logs of its loss: the mean of each row's squared error ``mse`` over the batch, and
        over the rows of each kind (``kind`` indexes :attr:`row_kinds`)."""
        logs = {"loss": mse.mean()}
        for i, name in enumerate(self.row_kinds):
            mask = (kind == i).to(mse.dtype)
            logs[f"loss_{name}"] = (mse * mask).sum() / mask.sum()
        return logs

    # ------------------------------------------------------------ rows, sampling, cost
    def kind_rows(self, batch: int) -> tuple[int, ...]:
        """Rows of each kind (:attr:`row_kinds`, in order) in a global batch of ``batch`` rows; the
        kinds are contiguous blocks in that order. ValueError when the batch cannot hold them."""
        return (batch,)

    def check_micro_batch(self, rows: int) -> None:
        """ValueError when the loss cannot run on micro-batches of ``rows`` rows (a process's rows of a
        step, cut into ``grad_accum`` blocks); any number of rows can by default. The trainer asks first."""
        return None

    @property
    def sampling_d(self) -> float | None:
        """The step size a sampler feeds this objective's networks (None: the step actually taken)."""
        return None

    def sampling_d_at(self, steps: int) -> float | None:
        """The step-size input for sampling in ``steps`` steps (default: :attr:`sampling_d` at every count)."""
        return self.sampling_d

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """The cost model of one training step of ``batch`` rows: (forward, backward) passes of the
        network per row, target passes included. Flow matching is (1, 1)."""
        return 1.0, 1.0

    def step_cost(self, batch: int) -> float:
        """Predicted step time relative to flow matching, a backward pass counted as two forwards."""
        forward, backward = self.passes_per_row(batch)
        return (forward + 2 * backward) / 3

    def time_split(self) -> tuple[int, float] | None:
        """The split of its network's conditioning the method trains (Decoupled MeanFlow; the network option
        ``time_split``): (layers fed the start time, -1 for the network's default; the step size the step-size
        embedder is held at). None: an ordinary network (the default)."""
        return None

    def teacher_refresh(self, progress: Progress) -> str | None:
        """The role ("online" or "ema") whose weights the trainer copies into ``TargetNetworks.teacher``
        before the step ``progress`` (None: keep it). Progressive distillation's stages use it."""
        return None

    # ------------------------------------------------------------ knobs
    @classmethod
    def own_knobs(cls) -> tuple[str, ...]:
        """The method's own knobs: its fields made by :func:`~.knobs.knob`, less ``num_classes`` and ``max_steps``."""
        return tuple(n for n in knob_fields(cls) if n not in ("num_classes", "max_steps"))

    @classmethod
    def knobs(cls) -> tuple[str, ...]:
        """Names of the settings of this objective, as the configuration names them (flat): ``max_steps``,
        its recipe's knobs (``cls.recipe``: the method's own recipe), then its own knobs."""
        return ("max_steps", *cls.recipe.knobs(), *cls.own_knobs())

    @classmethod
    def knob_docs(cls) -> dict[str, tuple[str, str]]:
        """Every knob -> (what it means, its allowed values in words)."""
        return {**knob_docs(cls, ("max_steps",)), **cls.recipe.knob_docs(), **knob_docs(cls, cls.own_knobs())}

    @classmethod
    def from_knobs(cls, num_classes: int = 0, **knobs: Any) -> Objective:
        """The objective with ``knobs`` set (flat, as the configuration names them: a recipe setting goes
        into its recipe), the others at their defaults; TypeError naming a knob it does not have."""
        in_recipe = {k: v for k, v in knobs.items() if k in cls.recipe.knobs()}
        own = {k: v for k, v in knobs.items() if k not in in_recipe}
        unknown = sorted(set(own) - {"max_steps", *cls.own_knobs()})
        if unknown:
            raise TypeError(f"{cls.title} has no knob {', '.join(unknown)}")
        return cls(num_classes=num_classes, recipe=cls.recipe.with_knobs(**in_recipe), **own)

    def args(self) -> dict[str, Any]:
        """The value of every knob (flat): with ``num_classes`` it rebuilds this objective (:meth:`from_knobs`)."""
        own = {name: getattr(self, name) for name in self.own_knobs()}
        return {"max_steps": self.max_steps, **self.recipe.args(), **own}


def leading_rows(batch: int, every: int, what: str) -> int:
    """B // every leading rows of a batch of B rows (one row in ``every``); ValueError naming ``what``
    when the batch is too small to hold one."""
    n = batch // every
    if n < 1:
        raise ValueError(
            f"a batch of {batch} rows has no {what} row with bootstrap_every={every}; "
            f"use a batch of at least {every} rows"
        )
    return n


def log_weights(row_kinds: tuple[str, ...], counts: tuple[int, ...]) -> dict[str, int]:
    """How many rows each log of :meth:`Objective.loss` averages over, given the rows of each kind."""
    return {"loss": sum(counts), **{f"loss_{kind}": n for kind, n in zip(row_kinds, counts)}}


def kind_counts(kinds: tuple[int, ...], share: RowShare) -> tuple[int, ...]:
    """How many of ``share``'s rows are of each kind, given the kinds' global row counts in batch order."""
    bounds = [sum(kinds[: i + 1]) for i in range(len(kinds))]
    below = [0, *(share.count_below(b) for b in bounds)]
    return tuple(below[i + 1] - below[i] for i in range(len(kinds)))
