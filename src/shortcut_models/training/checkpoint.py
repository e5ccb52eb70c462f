"""Checkpoint directories: self-describing, written atomically, found again for automatic resume.

Layout of ``RUN/checkpoints/step_00001000/``::

    config.json        the TrainConfig of the run
    model.safetensors  online network weights
    ema.safetensors    EMA weights (the teacher, and what sampling uses)
    state.pt           step, optimizer state, EMA counters, RNG states

A checkpoint is written under a temporary name and renamed when complete, so a crash leaves either
the previous checkpoint or the new one, never a half-written directory. Under torchrun only rank 0
writes; every rank reads the same checkpoint when a run resumes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import UserError

CHECKPOINTS = "checkpoints"
PREFIX = "step_"


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
    return (path / "config.json").is_file() and (path / "ema.safetensors").is_file()


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit() and is_checkpoint(p)]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    """Where checkpoint ``step`` of a run lives (``RUN/checkpoints/step_00001000``)."""
    return Path(run_dir) / CHECKPOINTS / f"{PREFIX}{step:08d}"


def save_checkpoint(
    run_dir: Path, step: int, config: dict[str, Any], model: nn.Module, ema: nn.Module, state: dict[str, Any], keep: int = 2
) -> Path:
    """Write checkpoint ``step`` atomically and delete all but the newest ``keep``; returns its path."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(run_dir, step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(_tensors(model), str(tmp / "model.safetensors"))
    save_file(_tensors(ema), str(tmp / "ema.safetensors"))
    torch.save({"step": step, **state}, tmp / "state.pt")
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
    """A checkpoint directory itself, or the latest checkpoint of a run directory."""
    path = Path(path)
    if is_checkpoint(path):
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise UserError(f"no checkpoint found at {path} (expected a run directory or a checkpoint directory)")
    return latest


def read_config(ckpt: Path) -> dict[str, Any]:
    return json.loads((Path(ckpt) / "config.json").read_text())


def load_weights(module: nn.Module, file: Path) -> None:
    """Load a safetensors file into ``module`` (strict: names and shapes must match)."""
    state = load_file(str(file))
    unwrap(module).load_state_dict(state, strict=True)


def load_state(ckpt: Path) -> dict[str, Any]:
    return torch.load(Path(ckpt) / "state.pt", map_location="cpu", weights_only=False)
