"""Checkpoints written before config.json described the network (format 1): their config.json is the
training config alone, so the network and its sample shape are derived from it and from a description
of the training data (shapes and classes only: a latent cache's manifest is read, never its shards)."""

from __future__ import annotations

from typing import Any

import torch

from ..checkpoints import ModelSpec
from ..config import TrainConfig
from ..data import describe_source
from ..models import build_model, network_spec
from ..objectives import recorded_objective


def spec_from_legacy_config(values: dict[str, Any]) -> ModelSpec:
    """The :class:`ModelSpec` of a format-1 checkpoint whose config.json is ``values``."""
    cfg = TrainConfig.from_dict({"init_from": "", **values})
    info = describe_source(cfg.data)
    num_classes = cfg.network_classes(info.num_classes)
    with torch.device("meta"):  # only the arguments are wanted: allocate nothing
        network = build_model(cfg.model, info.shape, num_classes, cfg.model_args)
    objective = recorded_objective(cfg.objective, num_classes, cfg.objective_args)
    return ModelSpec(
        network=network_spec(network),
        sample_shape=info.shape,
        num_classes=num_classes,
        objective=objective.name,
        objective_args=objective.args(),
        sampling_d=objective.sampling_d,
        data_shape=info.data_shape,
        data=cfg.data,
        autoencoder=info.autoencoder,
        scaling_factor=info.scaling_factor,
    )
