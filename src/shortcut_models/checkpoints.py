"""Checkpoint directories: self-describing, written atomically, found again for automatic resume.

Layout of ``RUN/checkpoints/step_00001000/`` (that of a Hugging Face model repository)::

    config.json        what the network is and how to sample it (:class:`ModelSpec`), the step,
                       and the training config of the run ("training")
    model.safetensors  online network weights
    ema.safetensors    EMA weights (the teacher, and what sampling uses)
    state.pt           optimizer state, EMA counters, RNG states (resuming only; tensors and plain
                       values, loaded with ``weights_only=True``)

``config.json`` alone rebuilds the network and its sampler: no data set or latent cache is opened
to load a checkpoint. Checkpoints written before this layout (``format_version`` absent) hold the
training config itself; :func:`training_config` reads both.

A checkpoint is written under a temporary name and renamed when complete, so a crash leaves either
the previous checkpoint or the new one, never a half-written directory. Under torchrun only rank 0
writes; every rank reads the same checkpoint when a run resumes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import UserError

CHECKPOINTS = "checkpoints"
PREFIX = "step_"
FORMAT_VERSION = 2
CONFIG = "config.json"
ONLINE_WEIGHTS = "model.safetensors"
EMA_WEIGHTS = "ema.safetensors"
STATE = "state.pt"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a trained network and sample it, without its data.

    network: ``{"class": "DiT" | "MLP", "args": {...}}`` (``shortcut_models.models.build_network``);
    sample_shape: one sample in the space the network works in (latents for latent data);
    num_classes: real classes (``num_classes`` is the null label; 0 = unconditional);
    objective, objective_args: the training objective and its knobs; sampling_d: the step size a
    sampler feeds the network (None: the step actually taken); autoencoder: the VAE (hub name or
    path) that decodes samples to images, None for pixels and vectors, with its scaling_factor;
    data_shape: one decoded sample; data: the name of the training data (e.g. "digits").
    """

    network: dict[str, Any]
    sample_shape: tuple[int, ...]
    num_classes: int
    objective: str
    objective_args: dict[str, Any]
    sampling_d: float | None
    data_shape: tuple[int, ...]
    data: str = ""
    autoencoder: str | None = None
    scaling_factor: float | None = None

    @property
    def max_steps(self) -> int:
        """M, the finest step count the network was trained for."""
        return int(self.objective_args.get("max_steps", 128))

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sample_shape"], out["data_shape"] = list(self.sample_shape), list(self.data_shape)
        return out

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> ModelSpec:
        """A spec from the entries of a config.json; ValueError naming what is missing or malformed."""
        names = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [k for k in required if k not in values]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        spec = {k: values[k] for k in names if k in values}
        try:
            spec["sample_shape"] = tuple(int(s) for s in spec["sample_shape"])
            spec["data_shape"] = tuple(int(s) for s in spec["data_shape"])
            spec["num_classes"] = int(spec["num_classes"])
        except (TypeError, ValueError):
            raise ValueError("sample_shape, data_shape and num_classes must be integers") from None
        if not isinstance(spec["network"], dict) or not isinstance(spec["objective_args"], dict):
            raise ValueError("network and objective_args must be JSON objects")
        return cls(**spec)


def checkpoint_config(spec: ModelSpec, step: int, training: dict[str, Any]) -> dict[str, Any]:
    """The config.json of a checkpoint: the spec, the step and the run's training config."""
    return {"format_version": FORMAT_VERSION, **spec.to_json(), "step": int(step), "training": training}


def training_config(config: dict[str, Any]) -> dict[str, Any]:
    """The training config stored in a checkpoint's config.json (either layout)."""
    return config["training"] if "format_version" in config else config


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile / DistributedDataParallel wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_checkpoint(path: Path) -> bool:
    """A directory a sampler can load: config.json and weights (EMA, or the online ones alone)."""
    path = Path(path)
    return (path / CONFIG).is_file() and ((path / EMA_WEIGHTS).is_file() or (path / ONLINE_WEIGHTS).is_file())


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if step_of(p) is not None and is_checkpoint(p)]
    return sorted(found, key=lambda p: step_of(p))


def step_of(path: Path) -> int | None:
    """The step of a checkpoint directory named ``step_N`` (None for other names)."""
    digits = Path(path).name[len(PREFIX) :]
    return int(digits) if Path(path).name.startswith(PREFIX) and digits.isdigit() else None


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    """Where checkpoint ``step`` of a run lives (``RUN/checkpoints/step_00001000``)."""
    return Path(run_dir) / CHECKPOINTS / f"{PREFIX}{step:08d}"


def save_checkpoint(
    run_dir: Path,
    step: int,
    config: dict[str, Any],
    model: nn.Module,
    ema: nn.Module,
    state: dict[str, Any] | None,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically and delete all but the newest ``keep``; returns its path.

    ``state`` (optimizer, counters, RNG states) goes to state.pt; None writes weights only (a
    checkpoint to sample or start a new run from, not one to resume).
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(run_dir, step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    save_file(_tensors(model), str(tmp / ONLINE_WEIGHTS))
    save_file(_tensors(ema), str(tmp / EMA_WEIGHTS))
    if state is not None:
        torch.save({"step": step, **state}, tmp / STATE)
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # re-saving the same step (e.g. a stop right after a periodic save)
        old = root / f".old-{final.name}-{os.getpid()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    _fsync_dir(root)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory itself, the latest checkpoint of a run directory, or a model repository
    on the Hugging Face hub named ``owner/name`` (downloaded once to the hub's cache; needs the
    ``huggingface_hub`` package, which diffusers brings)."""
    path = Path(path)
    if is_checkpoint(path):
        return path
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    if not path.exists() and HUB_ID.match(str(path)):
        return _from_hub(str(path))
    raise UserError(f"no checkpoint found at {path} (expected a run directory or a checkpoint directory)")


def _from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(
            f"no checkpoint at {repo_id!r}, and loading it from the Hugging Face hub needs the "
            "huggingface_hub package (pip install huggingface_hub)"
        ) from None
    try:
        local = Path(snapshot_download(repo_id, allow_patterns=[CONFIG, ONLINE_WEIGHTS, EMA_WEIGHTS]))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repository, no access: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(
            f"no checkpoint at {repo_id!r} locally, and the Hugging Face hub did not give one: {first}"
        ) from None
    if not is_checkpoint(local):
        raise UserError(f"hub repository {repo_id!r} holds no {CONFIG} with {EMA_WEIGHTS} or {ONLINE_WEIGHTS}")
    return local


def read_config(ckpt: Path) -> dict[str, Any]:
    """The config.json of a checkpoint; UserError when it is unreadable or not a JSON object."""
    file = Path(ckpt) / CONFIG
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {file}: {exc}") from None
    if not isinstance(config, dict):
        raise UserError(f"{file} is not a checkpoint config (a JSON object)")
    return config


def sampling_weights(ckpt: Path) -> Path:
    """The weights a sampler loads: the EMA network's, or the online network's where there are none."""
    ema = Path(ckpt) / EMA_WEIGHTS
    return ema if ema.is_file() else Path(ckpt) / ONLINE_WEIGHTS


def load_weights(module: nn.Module, file: Path) -> None:
    """Load a safetensors file into ``module`` (strict: names and shapes must match)."""
    state = load_file(str(file))
    unwrap(module).load_state_dict(state, strict=True)


def load_state(ckpt: Path) -> dict[str, Any]:
    """The training state of a checkpoint (tensors and plain values only: no code runs on load).

    A checkpoint written without one (``state=None``, e.g. converted from the authors' code) is a
    UserError: it can start a new run (``--init-from``), not continue one.
    """
    file = Path(ckpt) / STATE
    if not file.is_file() and (Path(ckpt) / CONFIG).is_file() and "converted_from" in read_config(ckpt):
        raise UserError(
            f"{ckpt} holds converted weights and no training state to resume; start a new run from it with "
            f"--init-from {Path(ckpt).parent.parent} and another --out"
        )
    return torch.load(file, map_location="cpu", weights_only=True)
