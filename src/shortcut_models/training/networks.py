"""The networks of a run: the online network, its EMA, the frozen teacher copy, and their description.

The online network is initialised from the run's seed (``derive_seed(seed, 99)``), so two runs of one
config start from the same weights; an objective that feeds the guidance scale to the network
(``Objective.guidance_input``, iMF) gets it built with ``guidance_input=True``. The EMA starts as a
copy of it. Objectives that distil a teacher
run (``teacher_run``) get a frozen copy as well, whose weights the trainer loads later (from the
teacher run, or from this run's checkpoint when it resumes).

What the network's step-size embedder sees (``model_args.step_input``: "level", -log2 d, or "size",
d itself) is spelled out in the run's config when the run is resolved, before the network is built
(:func:`with_step_input`): the user's setting; else, when the run resumes a checkpoint, what it recorded;
else, when the run starts from another run's weights (``init_from``, the distillation students' teacher
run), the source's; else the objective's own choice (``Objective.step_input``). The weights of a run
only mean something with the input they were trained on, so a run keeps it for life and an objective's
choice applies to new networks only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import seeding
from ..checkpoints import ModelSpec
from ..config import STEP_INPUT, TrainConfig
from ..data import DataSource, describe_source
from ..errors import UserError
from ..models import build_model, network_spec, with_time_split
from ..objectives import Objective, build_objective
from .ema import EMA
from .teacher import frozen_copy

INIT_STREAM = 99  # the seeding key of the network initialisation


@dataclass
class Networks:
    """The trained network, its moving average, and the bound teacher (None unless distilling)."""

    model: nn.Module
    ema: EMA
    teacher: nn.Module | None


def recorded_step_input(training: dict[str, Any]) -> str | None:
    """The step input a run was trained with, as its checkpoint's training config ``training`` records it
    (None when it does not say)."""
    model_args = training.get("model_args")
    return model_args.get(STEP_INPUT) if isinstance(model_args, dict) else None


def with_step_input(cfg: TrainConfig, objective: Objective, recorded: str | None) -> TrainConfig:
    """``cfg`` with ``model_args.step_input`` spelled out (see the module docstring): the user's; else
    ``recorded``, what the checkpoint the run resumes, or else its ``init_from`` source, trained with;
    else ``objective``'s."""
    if STEP_INPUT in cfg.model_args:
        return cfg
    return cfg.with_step_input(recorded if recorded is not None else objective.step_input)


def build_networks(
    cfg: TrainConfig,
    sample_shape: tuple[int, ...],
    num_classes: int,
    device: torch.device,
    teacher: bool,
    guidance_input: bool = False,
    time_split: tuple[int, float] | None = None,
) -> Networks:
    """The network of ``cfg`` on ``device`` (seeded), its EMA and, with ``teacher``, a frozen copy;
    ``guidance_input``: with the guidance input (UserError when ``model_args`` turn it off); ``time_split``:
    with its conditioning split so (``Objective.time_split``, Decoupled MeanFlow; the weights are the same)."""
    torch.manual_seed(seeding.derive_seed(cfg.seed, INIT_STREAM))
    args = dict(cfg.model_args)
    if guidance_input:
        if not args.get("guidance_input", True):
            raise UserError(
                f"objective {cfg.objective!r} feeds the guidance scale to the network; "
                "remove guidance_input=false from model_args"
            )
        args["guidance_input"] = True
    if time_split is not None:
        args = with_time_split(cfg.model, args, *time_split)
    model = build_model(cfg.model, sample_shape, num_classes, args).to(device)
    ema = EMA(model, cfg.ema_decay, cfg.ema_warmup)
    return Networks(model, ema, frozen_copy(model) if teacher else None)


def build_spec(model: nn.Module, source: DataSource, num_classes: int, objective: Objective, data: str) -> ModelSpec:
    """What a checkpoint records so that it can be loaded without the config: network, shapes, objective, data."""
    info = source.info
    return ModelSpec(
        network=network_spec(model),
        sample_shape=info.shape,
        num_classes=num_classes,
        objective=objective.name,
        objective_args=objective.args(),
        sampling_d=objective.sampling_d,
        data_shape=info.data_shape,
        data=data,
        autoencoder=info.autoencoder,
        scaling_factor=info.scaling_factor,
    )


def check_network(cfg: TrainConfig) -> None:
    """Refuse (UserError, one line) the network settings of ``cfg`` (``model``, ``model_args``) that the
    trainer would refuse, without memory or data: the networks are built on the meta device for the shape
    the data declares (a latent cache that is not here is left for the run to report)."""
    try:
        info = describe_source(cfg.data)
    except UserError:
        if cfg.data.startswith("latents:"):
            return
        raise
    num_classes = cfg.network_classes(info.num_classes)
    objective = build_objective(cfg.objective, num_classes, cfg.objective_args)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):  # no allocation, the random state untouched
        build_networks(cfg, info.shape, num_classes, torch.device("meta"), False, objective.guidance_input)
