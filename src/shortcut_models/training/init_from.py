"""Start a run from another run's weights: fine-tune a flow-matching model into a shortcut model.

``init_from`` (config key; ``shortcut train --init-from CKPT``) names a checkpoint directory or a run
directory (its latest checkpoint). When a run starts fresh, i.e. its own run directory holds no
checkpoint yet, the run's resolution reads the source's config (:func:`read_source`) and checks it
(:func:`check_compatible`), and once the networks are built :func:`load_initial_weights` copies

- the source's online weights (``model.safetensors``) into the new online network, and
- the source's EMA weights (``ema.safetensors``) into the new EMA module (the teacher of the
  self-consistency targets and the network sampling uses).

Conventions:

- Only weights are taken. The new run starts at step 0 with a fresh optimizer state, fresh EMA counters
  (so ``ema_warmup`` starts over), its own learning-rate schedule (warm-up included) and the objective
  of its own config. The source's optimizer moments were estimated for another loss and another step
  count; starting them afresh keeps a fine-tuning run a function of (source weights, config) alone.
- A run that already has a checkpoint of its own resumes from it and never reads the source again.
  ``init_from`` stays in the saved config so the run describes where it started.
- The source must have been trained on the same data with the same network: its config's ``data``,
  ``class_conditional``, ``model`` and ``model_args`` (hence input shape and number of classes) must
  equal the new config's (a new run that does not set ``model_args.step_input`` takes the source's, see
  ``training/networks.py``); the first key that differs is named in a :class:`~shortcut_models.errors.UserError`.
- A source network without a step-size embedding (no ``*.d_embedder.*`` entries, e.g. a network trained
  elsewhere that ignored d) gets one that starts at zero: the d embedder keeps its fresh
  initialisation except its last Linear, whose weight and bias are zeroed, so ``emb_d(d) = 0`` for
  every d and the network's outputs equal the source's at every d (in particular at the flow level
  d = 1/128), while gradients still reach the zeroed layer.
- A source network without the guidance input (no ``*.guidance_embedder.*`` entries: any network but
  iMF's) fine-tuned into one with it (``imf``) gets a guidance embedding that starts at zero the same way
  (the last Linear of each of its three embedders zeroed), so the new network starts as the source at
  every guidance. No other key may be missing or extra.
- A network that holds its step-size input at 1/M (M = ``max_steps``; Decoupled MeanFlow's split network,
  ``Objective.time_split``) starts at the source's velocity only where the source was trained at that step
  size (1/M of the source's ``max_steps``; a split source: the step size it held): else a UserError asks
  for the source's ``max_steps`` (:func:`check_held_step`).
- Under torchrun every process reads the same files and loads the same weights; a failure on any
  process stops every process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import checkpoints as ckpt
from .. import distributed
from ..config import TrainConfig
from ..errors import UserError
from ..objectives import Objective

# Config keys that fix the data and the network; they must be equal in the source and the new run.
COMPATIBLE_KEYS = ("data", "class_conditional", "model", "model_args")

# Attribute name of the step-size embedder inside ``models.embeddings.Conditioning``.
D_EMBEDDER = "d_embedder"
# ... and of the guidance input's embedder (three scalar embedders: scale, lo, hi).
GUIDANCE_EMBEDDER = "guidance_embedder"


@dataclass(frozen=True)
class SourceCheckpoint:
    """A checkpoint whose weights a fresh run starts from (its ``init_from`` or its teacher run) and its
    config.json, read once."""

    path: Path
    config: dict[str, Any]

    @property
    def training(self) -> dict[str, Any]:
        """The training config the source was trained with."""
        return ckpt.training_config(self.config)


def read_source(name: str, key: str) -> SourceCheckpoint:
    """The checkpoint ``name`` (a checkpoint or run directory, or a hub id) and its config; UserError,
    prefixed with the config ``key`` that named it, when it is missing."""
    try:
        path = ckpt.resolve_checkpoint(name)
    except UserError as exc:
        raise UserError(f"{key}: {exc}") from None
    return SourceCheckpoint(path, ckpt.read_config(path))


@dataclass(frozen=True)
class InitSource:
    """Where a run's initial weights came from."""

    checkpoint: Path
    step: int | None  # the source's training step (None when its directory name does not say)
    objective: str  # the source's objective ("flow" or "shortcut")
    added_d_embedders: tuple[str, ...] = ()  # module names given a zero step-size embedding
    added_guidance: tuple[str, ...] = ()  # module names of guidance embedders given a zero embedding

    def describe(self) -> str:
        """The one-line message the trainer prints to stderr."""
        step = "?" if self.step is None else str(self.step)
        extra = "; no step-size embedding there: added one that starts at zero" if self.added_d_embedders else ""
        if self.added_guidance:
            extra += "; no guidance input there: added one that starts at zero"
        return f"initialised from {self.checkpoint} (step {step}, objective {self.objective}){extra}"


def check_compatible(source: dict, cfg: TrainConfig, where: Path) -> None:
    """Raise UserError naming the first of :data:`COMPATIBLE_KEYS` on which ``source`` and ``cfg`` differ."""
    mine = cfg.to_dict()
    for key in COMPATIBLE_KEYS:
        theirs = source.get(key)
        if theirs != mine[key]:
            raise UserError(
                f"init_from {where} was trained with a different {key} ({theirs!r} there, {mine[key]!r} now); "
                "fine-tuning keeps the data and the network"
            )


def held_step_of(config: dict[str, Any]) -> float | None:
    """The step size a source checkpoint's network gives its velocity at: the step-size input a split network
    holds (``split_step``), else 1/M of the source's ``max_steps`` (the flow level); None when it records neither."""
    split = ((config.get("network") or {}).get("args") or {}).get("split_step")
    if split is not None:
        return float(split)
    max_steps = (config.get("objective_args") or {}).get("max_steps")
    return None if max_steps is None else 1.0 / max_steps


def check_held_step(source: SourceCheckpoint, objective: Objective) -> None:
    """UserError when ``objective`` holds its network's step-size input (``time_split``) at another step size than
    the one ``source`` was trained at: the run would not start at the source's velocity (one line, naming the fix)."""
    split = objective.time_split()
    theirs = held_step_of(source.config)
    if split is None or theirs is None or math.isclose(split[1], theirs, rel_tol=1e-9):
        return
    raise UserError(
        f"init_from {source.path} was trained at step size 1/{1 / theirs:g}; {objective.name} holds the network's "
        f"step-size input at 1/max_steps = 1/{objective.max_steps}, so it would not start at that run's velocity: "
        f"set max_steps={round(1 / theirs)}"
    )


def d_embedder_keys(module: nn.Module) -> dict[str, list[str]]:
    """State-dict keys of every step-size embedder in ``module``: {module name: [keys]}."""
    return _embedder_keys(module, lambda name: name.split(".")[-1] == D_EMBEDDER)


def guidance_embedder_keys(module: nn.Module) -> dict[str, list[str]]:
    """State-dict keys of each of the guidance input's scalar embedders in ``module``: {module name: [keys]}."""
    return _embedder_keys(module, lambda name: name.split(".")[-2:-1] == [GUIDANCE_EMBEDDER])


def _embedder_keys(module: nn.Module, chosen) -> dict[str, list[str]]:
    keys = list(module.state_dict())
    return {name: [k for k in keys if k.startswith(name + ".")] for name, _ in module.named_modules() if chosen(name)}


@torch.no_grad()
def zero_last_linear(module: nn.Module) -> None:
    """Zero the weight and bias of the last ``nn.Linear`` inside ``module`` (its output becomes 0)."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(module).__name__} has no Linear layer to zero")
    nn.init.zeros_(linears[-1].weight)
    if linears[-1].bias is not None:
        nn.init.zeros_(linears[-1].bias)


def load_network(module: nn.Module, file: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Load ``file`` into ``module``; returns the names of the step-size embedders and of the guidance
    embedders that were absent there.

    Every key must match by name and shape, except that the complete set of keys of a ``d_embedder`` or
    of the whole guidance embedder may be missing; such an embedder is kept with its last Linear zeroed
    (see the module docstring).
    """
    module = ckpt.unwrap(module)
    state = ckpt.read_weights(file)  # UserError when missing, unreadable or non-finite
    own = module.state_dict()
    missing = set(own) - set(state)
    d_embedders = d_embedder_keys(module)
    added = tuple(name for name, keys in d_embedders.items() if keys and set(keys) <= missing)
    guidance = guidance_embedder_keys(module)
    guidance_keys = {k for keys in guidance.values() for k in keys}
    added_guidance = tuple(guidance) if guidance_keys and guidance_keys <= missing else ()
    may_lack = {k for name in added for k in d_embedders[name]} | (guidance_keys if added_guidance else set())
    ckpt.check_fit(own, state, file, may_lack=may_lack)
    module.load_state_dict(state, strict=False)
    named = dict(module.named_modules())
    for name in (*added, *added_guidance):
        zero_last_linear(named[name])
    return added, added_guidance


def _load(model: nn.Module, ema_module: nn.Module, source: SourceCheckpoint) -> InitSource:
    path = source.path
    added, guided = load_network(model, path / ckpt.ONLINE_WEIGHTS)
    added_ema, guided_ema = load_network(ema_module, path / ckpt.EMA_WEIGHTS)
    return InitSource(
        path,
        source.config.get("step", ckpt.step_of(path)),
        str(source.training.get("objective", "?")),
        tuple(sorted(set(added) | set(added_ema))),
        tuple(sorted(set(guided) | set(guided_ema))),
    )


def load_initial_weights(model: nn.Module, ema_module: nn.Module, source: SourceCheckpoint) -> InitSource:
    """Copy the weights of ``source`` (read and checked by the run's resolution) into ``model`` (online)
    and ``ema_module`` (EMA).

    Both modules must already be built from the run's config (wrappers such as DDP or torch.compile are
    looked through). Raises UserError on weights that are unreadable or do not fit. Collective under
    torchrun: call it on every process; if any process fails, every process raises.
    """
    error: UserError | None = None
    try:
        info = _load(model, ema_module, source)
    except UserError as exc:
        error = exc
    if distributed.any_true(error is not None):
        raise error or UserError(f"another process could not load init_from {source.path}")
    return info
