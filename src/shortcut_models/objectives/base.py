"""The interface every training objective implements, its inputs and what it returns.

An objective turns a data batch into regression targets (:meth:`Objective.targets`, no gradient)
and a loss (:meth:`Objective.loss`). Everything it needs is handed to it: the networks that may
build targets (:class:`TargetNetworks`) and how far training has come (:class:`Progress`), so an
objective keeps no state between calls. Conventions: t = 0 is noise, t = 1 is data; d is the step
size; every network is ``model(x_t, t, d, y)`` with ``y == num_classes`` the null label.

An objective is a dataclass: its fields other than ``num_classes`` are its *knobs*, the settings a
run configures (``objective_args`` in the training config) and a checkpoint records (every knob, so a
checkpoint samples with the values it was trained with, whatever the defaults of a later release).
Defaults and range checks live on the dataclass, nowhere else. Every objective has the *recipe* knobs of this
base class: the time sampler (``time_sampler``, :mod:`.time_samplers`) and the loss weight
(``loss_weight``, :mod:`.loss_weights`); objectives whose targets come from a network add the
target network (:class:`~.target_networks.TargetNetworkKnobs`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..seeding import RowDraws, RowShare
from ..validation import Float, Int, OneOf, PowerOfTwo, check_int
from .loss_weights import LOSS_WEIGHTS, per_row_loss
from .time_samplers import TIME_SAMPLERS

Network = Callable[..., torch.Tensor]  # model(x_t, t, d, y) -> velocity


def knob(default: Any, spec: Callable[[str, Any], Any], meaning: str) -> Any:
    """A knob of an objective: its default, its allowed values (``spec``, checked when the objective is
    built; ``spec.describe()`` says them in words) and what it means (shown by `shortcut config`)."""
    return dataclasses.field(default=default, metadata={"spec": spec, "meaning": meaning})


def redefault(cls: type, name: str, default: Any) -> Any:
    """The knob ``name`` of ``cls`` with another default (a method's own recipe), its range and meaning kept."""
    base = {f.name: f for f in dataclasses.fields(cls)}[name]
    return dataclasses.field(default=default, metadata=base.metadata)


@dataclass
class Targets:
    """One training batch, built without gradient; row i comes from data row i.

    x_t: points on the path (t = 0 noise, t = 1 data); t, d: time and step size per row ([B] float);
    v: regression target; y: labels fed to the network (null = num_classes); kind: int64 [B], the
    index in the objective's :attr:`Objective.row_kinds` of the kind of each row (e.g. shortcut's
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


@dataclass(kw_only=True)
class Objective(ABC):
    """A training objective on the shared network interface ``model(x_t, t, d, y)``.

    Args:
        num_classes: real classes; label ``num_classes`` is the null label (0 = unconditional).
        max_steps: M, the finest step count (a power of two).
        time_sampler: how times are drawn: "grid" (t = i / M, the authors'), "uniform" or
            "logit-normal" (sigmoid(time_mu + time_sigma n)); see :mod:`.time_samplers`.
        time_mu, time_sigma: the logit-normal sampler's parameters (MeanFlow's: 0.4, 1.0 with t = 0 noise).
        loss_weight: how each row's squared error becomes its loss: "mse", "adaptive" (MeanFlow's:
            sum of squares / (its stopped value + adaptive_eps) ** adaptive_power) or "pseudo-huber"
            (sqrt(sum of squares + c^2) - c, c = huber_c sqrt(elements per row)); see :mod:`.loss_weights`.

    Class attributes a subclass sets: ``name``, ``title``, ``row_kinds``, ``teacher_run``,
    ``min_max_steps`` (below) and ``step_input``, the objective's own choice of what the network's
    step-size embedder sees (the network option ``step_input``, ``shortcut_models.models``):
    "level" (-log2 d, the authors' shortcut DiT; the default here) or "size" (d itself, continuous
    at d = 0, as the interval methods' own networks embed t - r: MeanFlow sets it). A new run takes
    it when its ``model_args`` do not set ``step_input``; a resumed run keeps what its checkpoint
    recorded and a fine-tuning run (``init_from``, the distillation students) its source's
    (``shortcut_models.training.networks``). It is not a knob: the network, not the objective, records it.
    """

    num_classes: int = knob(0, Int(0), "real classes; label num_classes is the null label (0: unconditional)")
    max_steps: int = knob(128, PowerOfTwo(), "M, the finest step count (d = 1/M at the flow level)")
    time_sampler: str = knob("grid", OneOf(TIME_SAMPLERS), "where on the path rows are trained (time samplers)")
    time_mu: float = knob(0.4, Float(), "logit-normal sampler: mean of the logit (t = 0 noise; MeanFlow's 0.4)")
    time_sigma: float = knob(1.0, Float(0.0, low_open=True), "logit-normal sampler: spread of the logit")
    loss_weight: str = knob("mse", OneOf(LOSS_WEIGHTS), "how each row's squared error becomes its loss")
    adaptive_power: float = knob(1.0, Float(0.0), "adaptive weight: p of 1 / (loss + eps)^p (0: sum of squares)")
    adaptive_eps: float = knob(1e-3, Float(0.0, low_open=True), "adaptive weight: eps")
    huber_c: float = knob(0.00054, Float(0.0, low_open=True), "pseudo-Huber: c per square root of a row's size")

    name: ClassVar[str]  # the registry key, e.g. "shortcut"
    title: ClassVar[str]  # how reports name it, e.g. "flow matching"
    # names of the kinds of rows a batch holds, in batch order (leading rows first); logs are per kind
    row_kinds: ClassVar[tuple[str, ...]] = ("flow",)
    # True: the targets need a trained flow-matching network, the run named by the knob ``teacher``; the
    # trainer loads it (objectives never read checkpoints) and hands it over as ``TargetNetworks.teacher``
    teacher_run: ClassVar[bool] = False
    min_max_steps: ClassVar[int] = 1  # the smallest M the objective allows
    # the network's step-size input in a new run that does not choose one: "level" or "size" (see above)
    step_input: ClassVar[str] = "level"
    # True: the network takes the guidance scale and interval as an input (``model(..., guidance=g)``, iMF);
    # the trainer builds it with ``guidance_input=True``
    guidance_input: ClassVar[bool] = False
    # knobs inherited from a parent class that this objective does not read: not listed, not recorded, and
    # ignored when given (as any other objective's knob is)
    unused_knobs: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        """Range checks of every knob (ValueError naming the knob), from each field's ``spec``."""
        for f in dataclasses.fields(self):
            if "spec" in f.metadata:  # a plain field (no knob()) is not checked
                f.metadata["spec"](f.name, getattr(self, f.name))
        check_int(f"max_steps of {self.title}", self.max_steps, low=self.min_max_steps)

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
        default: the whole batch).
        """
        draws = RowDraws.for_batch(x1.shape[0], generator, x1.device, rows)
        x0 = draws.normal(tuple(x1.shape[1:]), x1.dtype) if x0 is None else x0
        return self.build_targets(TargetNetworks.of(networks), x0, x1, y, draws, progress or Progress())

    @abstractmethod
    def build_targets(
        self,
        networks: TargetNetworks,
        x0: torch.Tensor,
        x1: torch.Tensor,
        y: torch.Tensor | None,
        draws: RowDraws,
        progress: Progress,
    ) -> Targets:
        """Targets from noise ``x0`` and data ``x1``; every further random draw comes from ``draws``."""

    def labels(self, y: torch.Tensor | None, rows: int, device: torch.device) -> torch.Tensor:
        """Labels as given (int64 on ``device``), or the null label on every row when ``y`` is None."""
        if y is None:
            return torch.full((rows,), self.num_classes, dtype=torch.long, device=device)
        return y.to(device=device, dtype=torch.long)

    # ------------------------------------------------------------ loss
    def loss(self, model: nn.Module, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of ``model`` on ``targets`` (rows weighted by ``loss_weight``, then averaged) and its logs.

        Logs are detached tensors, so logging costs no host sync until the caller reads them:
        ``loss`` is the plain mean squared error over the batch (comparable whatever the loss
        weight), ``loss_<kind>`` the same over each kind of row (NaN where a kind has no rows).
        """
        pred = model(targets.x_t, targets.t, targets.d, targets.y, **targets.network_kwargs())
        sq = (pred.float() - targets.v.float()).pow(2).flatten(1)
        per_row, mse = per_row_loss(self.loss_weight, sq, self)
        loss = per_row.mean()
        with torch.no_grad():
            logs = {"loss": mse.mean()}
            for i, kind in enumerate(self.row_kinds):
                mask = (targets.kind == i).to(mse.dtype)
                logs[f"loss_{kind}"] = (mse * mask).sum() / mask.sum()
        return loss, logs

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

    def teacher_refresh(self, progress: Progress) -> str | None:
        """The role ("online" or "ema") whose weights the trainer copies into ``TargetNetworks.teacher``
        before the step ``progress`` (None: keep it). Progressive distillation's stages use it."""
        return None

    # ------------------------------------------------------------ knobs
    @classmethod
    def knob_docs(cls) -> dict[str, tuple[str, str]]:
        """Every knob -> (what it means, its allowed values in words)."""
        docs, names = {}, cls.knobs()
        for f in dataclasses.fields(cls):
            if f.name not in names:
                continue
            spec = f.metadata.get("spec")
            docs[f.name] = (f.metadata.get("meaning", ""), spec.describe() if spec is not None else "any value")
        return docs

    @classmethod
    def knobs(cls) -> tuple[str, ...]:
        """Names of the settings of this objective (every dataclass field but ``num_classes`` and
        :attr:`unused_knobs`)."""
        skip = ("num_classes", *cls.unused_knobs)
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in skip)

    def args(self) -> dict[str, Any]:
        """The value of every knob: with ``num_classes`` it rebuilds this objective."""
        return {name: getattr(self, name) for name in self.knobs()}


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
