"""Convert a checkpoint of the authors' JAX code into an ordinary run directory of this package.

Their trainer pickles ``{"train_state": {"params", "params_ema", "opt_state", "step"}, "_timestamp"}``
(a flax parameter tree of numpy/JAX arrays); run locally, it writes that pickle as the only file of a
directory named after the checkpoint, so a file or such a directory is accepted. The pickle is read
through :mod:`shortcut_models.safe_pickle`: nothing in it runs, and JAX need not be installed.

The result ``RUN/checkpoints/step_N/`` holds the online weights as ``model.safetensors``, the EMA
weights as ``ema.safetensors`` (what sampling uses) and a config.json describing a
``DiT(authors_quirks=True, step_input="level")``, the shortcut objective, the latent shape and the VAE, plus a training
config a fine-tuning run can start from (``shortcut train --init-from RUN``). It holds no optimizer
state, so it is a starting point, not a run to resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import checkpoints as ckpt
from ..config import TrainConfig, build_config, validate
from ..errors import UserError
from ..models import DIT_PRESETS, DiT, network_spec
from ..models.dit import sincos_position_embedding
from ..objectives import build_objective
from ..safe_pickle import load_array_tree
from .authors_dit import AuthorsArchitecture, authors_state_dict, infer_architecture

__all__ = ["SD_VAE", "SD_VAE_SCALING", "ConvertedRun", "convert_jax_checkpoint", "parse_shape", "read_train_state"]

# The VAE of the paper's latent models (the authors load its flax port, pcuenq/sd-vae-ft-mse-flax).
SD_VAE = "stabilityai/sd-vae-ft-mse"
SD_VAE_SCALING = 0.18215
_SD_VAES = {SD_VAE, "pcuenq/sd-vae-ft-mse-flax", "stabilityai/sd-vae-ft-ema"}
VAE_DOWNSCALE = 8  # Stable Diffusion VAEs: 256x256x3 images <-> 32x32x4 latents


@dataclass(frozen=True)
class ConvertedRun:
    """What :func:`convert_jax_checkpoint` wrote."""

    run_dir: Path
    checkpoint: Path
    architecture: AuthorsArchitecture
    num_heads: int
    model: str
    step: int
    num_parameters: int
    train_preset: str
    model_args: dict[str, Any]

    def fine_tune_command(self) -> str:
        """The `shortcut train` line that starts a new run from these weights (same network and data)."""
        args = json.dumps(self.model_args, separators=(",", ":"))
        return (
            f"shortcut train --preset {self.train_preset} --init-from {self.run_dir} "
            f"model={self.model} 'model_args={args}'"
        )


def parse_shape(text: str) -> tuple[int, int, int]:
    """'4x32x32' -> (4, 32, 32): channels x height x width of one sample, square."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or shape[1] != shape[2]:
        raise UserError(f"--data-shape must look like 4x32x32 (channels x height x width, square), got {text!r}")
    return shape  # type: ignore[return-value]


def _pickle_file(source: Path) -> Path:
    if source.is_file():
        return source
    if source.is_dir():  # the authors' local save: a directory holding the pickle as its one file
        files = [p for p in source.iterdir() if p.is_file()]
        if len(files) == 1:
            return files[0]
        raise UserError(f"{source} is a directory with {len(files)} files; give the checkpoint file itself")
    raise UserError(f"no checkpoint file at {source}")


def read_train_state(source: str | os.PathLike) -> dict[str, Any]:
    """The ``train_state`` dict of an authors' checkpoint (params, params_ema, step; safe unpickling)."""
    file = _pickle_file(Path(source))
    tree = load_array_tree(file)
    state = tree.get("train_state") if isinstance(tree, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("params"), dict):
        raise UserError(f"{file} is not a checkpoint of the authors' code (no train_state with params)")
    return state


def _architecture_name(arch: AuthorsArchitecture, preset: str | None, num_heads: int | None) -> tuple[str, dict]:
    """The model name and model_args that build this network; UserError when the preset disagrees."""
    if preset is not None:
        if preset not in DIT_PRESETS:
            raise UserError(f"unknown --preset {preset!r}; choose one of {', '.join(DIT_PRESETS)} or give --num-heads")
        expected = DIT_PRESETS[preset]
        found = {"patch_size": arch.patch_size, "hidden_size": arch.hidden_size, "depth": arch.depth}
        for key, value in found.items():
            if expected[key] != value:
                raise UserError(
                    f"--preset {preset} has {key} {expected[key]}, the checkpoint {value} ({arch.describe()})"
                )
        if num_heads is not None and num_heads != expected["num_heads"]:
            raise UserError(f"--preset {preset} has {expected['num_heads']} heads; --num-heads says {num_heads}")
        args: dict[str, Any] = {}
    else:
        if num_heads is None:
            raise UserError("give --preset (e.g. DiT-B/2) or --num-heads: the checkpoint does not store the head count")
        matching = [
            name
            for name, p in DIT_PRESETS.items()
            if (p["patch_size"], p["hidden_size"], p["depth"], p["num_heads"])
            == (arch.patch_size, arch.hidden_size, arch.depth, num_heads)
        ]
        preset = matching[0] if matching else f"DiT-B/{arch.patch_size}"
        args = (
            {}
            if matching
            else {
                "patch_size": arch.patch_size,
                "hidden_size": arch.hidden_size,
                "depth": arch.depth,
                "num_heads": num_heads,
            }
        )
    heads = num_heads if num_heads is not None else DIT_PRESETS[preset]["num_heads"]
    if heads < 1 or arch.hidden_size % heads:
        raise UserError(f"hidden_size {arch.hidden_size} is not divisible by num_heads {heads}")
    if arch.mlp_ratio != 4.0:
        args["mlp_ratio"] = arch.mlp_ratio
    # the authors' network: their attention scale and init, and the step size fed as its level -log2 d
    return preset, {**args, "authors_quirks": True, "step_input": "level"}


def _vae(vae: str | None, channels: int) -> tuple[str | None, float | None, int]:
    """The autoencoder spec, its scaling factor and its downscale factor (a local VAE: from its config.json)."""
    if vae is None:
        return (SD_VAE, SD_VAE_SCALING, VAE_DOWNSCALE) if channels == 4 else (None, None, 1)
    if vae.strip() in ("", "none", "identity"):
        return None, None, 1
    local = Path(vae) / "config.json"
    if local.is_file():
        try:
            config = json.loads(local.read_text())
            return vae, float(config["scaling_factor"]), 2 ** (len(config["block_out_channels"]) - 1)
        except (ValueError, KeyError, TypeError):
            raise UserError(
                f"{local} is not the config of a diffusers AutoencoderKL (scaling_factor, block_out_channels)"
            ) from None
    return vae, (SD_VAE_SCALING if vae in _SD_VAES else None), VAE_DOWNSCALE


def default_train_preset(arch: AuthorsArchitecture) -> str:
    """celebahq256 for unconditional models, imagenet256-xl for DiT-XL sizes, else imagenet256."""
    if arch.num_classes == 0:
        return "celebahq256"
    return "imagenet256-xl" if (arch.hidden_size, arch.depth) == (1152, 28) else "imagenet256"


def _training_config(
    arch: AuthorsArchitecture, model: str, model_args: dict, train_preset: str, data: str | None
) -> TrainConfig:
    values = build_config(train_preset, "shortcut").to_dict()
    values.update(model=model, model_args=model_args, class_conditional=arch.num_classes > 0)
    if data is not None:
        values["data"] = data
    cfg = TrainConfig.from_dict(values)
    validate(cfg)
    return cfg


def _network(config: dict, state: dict[str, torch.Tensor]) -> nn.Module:
    """A DiT holding ``state`` (no copy: built on the meta device, then the tensors are assigned)."""
    with torch.device("meta"):
        net = DiT(**config)
    state = {**state, "pos_embed": sincos_position_embedding(net.hidden_size, net.grid)[None]}
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1:2] or [str(exc)]
        raise UserError(f"the checkpoint's parameters do not fit the network: {first[0].strip()}") from None
    return net.eval().requires_grad_(False)


def convert_jax_checkpoint(
    source: str | os.PathLike,
    out: str | os.PathLike,
    preset: str | None = None,
    num_heads: int | None = None,
    data_shape: str = "4x32x32",
    vae: str | None = None,
    train_preset: str | None = None,
    data: str | None = None,
    report: Callable[[str], None] = lambda line: None,
) -> ConvertedRun:
    """Write ``out`` as a run directory holding the authors' checkpoint ``source`` (see the module docstring).

    ``preset`` (a DiT preset name) or ``num_heads`` gives the head count; every other size is read
    from the shapes and a preset that disagrees is refused. ``data_shape`` is one latent (C x H x W);
    ``vae`` decodes it (default: the paper's sd-vae-ft-mse for 4 channels, none for others).
    ``train_preset`` and ``data`` fill the training config a fine-tuning run is compared with.
    """
    channels, size, _ = parse_shape(data_shape)
    out = Path(out)
    if out.exists() and ckpt.list_checkpoints(out):
        raise UserError(f"{out} already holds checkpoints; choose a new --out")
    state = read_train_state(source)
    step = int(state.get("step", 0) or 0)
    params, params_ema = state["params"], state.get("params_ema")
    del state  # the optimizer moments are not converted: free them before the weights are copied
    arch = infer_architecture(params)
    report(f"found a DiT with {arch.describe()}, step {step}")
    if arch.in_channels != channels:
        raise UserError(f"--data-shape {data_shape} has {channels} channels, the checkpoint {arch.in_channels}")
    if size % arch.patch_size:
        raise UserError(f"--data-shape {data_shape}: size {size} is not a multiple of the patch size {arch.patch_size}")
    model_name, model_args = _architecture_name(arch, preset, num_heads)
    train_preset = train_preset or default_train_preset(arch)
    cfg = _training_config(arch, model_name, model_args, train_preset, data)
    config = {
        "input_size": size,
        "in_channels": channels,
        "num_classes": arch.num_classes,
        **DIT_PRESETS[model_name],
        **model_args,
    }
    online = _network(config, authors_state_dict(params, arch))
    ema = online if params_ema is None else _network(config, authors_state_dict(params_ema, arch))
    del params, params_ema
    autoencoder, scaling, downscale = _vae(vae, channels)
    objective = build_objective("shortcut", arch.num_classes, cfg.objective_args)
    decoded = (3, size * downscale, size * downscale) if autoencoder else (channels, size, size)
    spec = ckpt.ModelSpec(
        network=network_spec(online),
        sample_shape=(channels, size, size),
        num_classes=arch.num_classes,
        objective=objective.name,
        objective_args=objective.args(),
        sampling_d=objective.sampling_d,
        data_shape=decoded,
        data=cfg.data,
        autoencoder=autoencoder,
        scaling_factor=scaling,
    )
    config_json = {
        **ckpt.checkpoint_config(spec, step, cfg.to_dict()),
        "converted_from": os.fspath(Path(source).resolve()),
    }
    written = ckpt.save_checkpoint(out, step, config_json, online, ema, state=None)
    n_params = sum(p.numel() for p in online.parameters())
    return ConvertedRun(out, written, arch, config["num_heads"], model_name, step, n_params, train_preset, model_args)
