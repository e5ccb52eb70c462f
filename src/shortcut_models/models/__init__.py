"""Velocity networks ``model(x_t, t, d, y)``: an MLP for vectors and a DiT for images/latents.

Every network keeps its constructor arguments in ``.config``, so ``network_spec(model)`` describes it
in a checkpoint and ``build_network(spec)`` rebuilds it from a fixed table of classes (no class is ever
looked up by a name read from a file beyond this table). Both networks take ``step_input``, what their
step-size embedder sees (:data:`STEP_INPUTS`: the level -log2 d, the default, or d itself; see
:mod:`.embeddings`), and ``time_split``, the split of their conditioning between the start time and the end time
(Decoupled MeanFlow; :func:`with_time_split`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import UserError
from .dit import DIT_PRESETS, DiT
from .embeddings import DEFAULT_STEP_INPUT, SPLIT_STEP, STEP_INPUTS, check_step_input, default_time_split
from .mlp import DEFAULT_DEPTH as MLP_DEPTH
from .mlp import MLP

# The network classes a checkpoint may name.
NETWORKS: dict[str, type[nn.Module]] = {"DiT": DiT, "MLP": MLP}

# The names the training config's ``model`` key accepts.
MODEL_NAMES: tuple[str, ...] = ("mlp", *DIT_PRESETS)


def build_model(name: str, shape: tuple[int, ...], num_classes: int, model_args: dict[str, Any]) -> nn.Module:
    """Build network ``name`` ('mlp' or a DiT preset such as 'DiT-B/2') for samples of ``shape``."""
    try:
        if name == "mlp":
            if len(shape) != 1:
                raise UserError(f"model 'mlp' needs vector data, got samples of shape {shape}")
            return MLP(dim=shape[0], num_classes=num_classes, **model_args)
        if name in DIT_PRESETS:
            if len(shape) != 3 or shape[1] != shape[2]:
                raise UserError(f"model {name!r} needs square images [C, H, H], got samples of shape {shape}")
            return DiT.from_preset(
                name, input_size=shape[1], in_channels=shape[0], num_classes=num_classes, **model_args
            )
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    except TypeError as exc:
        raise UserError(f"bad model_args for {name!r}: {exc}") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None


def with_time_split(name: str, model_args: dict[str, Any], time_split: int, split_step: float) -> dict[str, Any]:
    """``model_args`` of network ``name`` with its conditioning split (Decoupled MeanFlow; see models/dit.py and
    models/mlp.py): ``time_split`` layers fed the start time (-1: the default for the network's depth,
    :func:`~.embeddings.default_time_split`), the step-size embedder held at ``split_step``."""
    if time_split == -1:
        if name == "mlp":
            time_split = default_time_split(int(model_args.get("depth", MLP_DEPTH)), low=0)
        elif name in DIT_PRESETS:
            time_split = default_time_split(int({**DIT_PRESETS[name], **model_args}["depth"]), low=1)
    return {**model_args, "time_split": time_split, "split_step": split_step}


def network_spec(model: nn.Module) -> dict[str, Any]:
    """``{"class": ..., "args": ...}``: what :func:`build_network` needs to rebuild ``model``."""
    for name, cls in NETWORKS.items():
        if type(model) is cls:
            return {"class": name, "args": dict(model.config)}
    raise ValueError(
        f"{type(model).__name__} is not one of the networks a checkpoint can describe ({', '.join(NETWORKS)})"
    )


def build_network(spec: dict[str, Any]) -> nn.Module:
    """The network described by ``spec`` (see :func:`network_spec`); ValueError on a bad description."""
    if not isinstance(spec, dict) or spec.get("class") not in NETWORKS or not isinstance(spec.get("args"), dict):
        raise ValueError(f"a network description needs 'class' (one of {', '.join(NETWORKS)}) and 'args', got {spec!r}")
    try:
        return NETWORKS[spec["class"]](**spec["args"])
    except TypeError as exc:
        raise ValueError(f"bad arguments for {spec['class']}: {exc}") from None


__all__ = [
    "DEFAULT_STEP_INPUT",
    "DIT_PRESETS",
    "SPLIT_STEP",
    "MLP",
    "MODEL_NAMES",
    "NETWORKS",
    "STEP_INPUTS",
    "DiT",
    "build_model",
    "build_network",
    "check_step_input",
    "network_spec",
    "with_time_split",
]
