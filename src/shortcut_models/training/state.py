"""What a checkpoint holds of a run besides its config: weights, optimizer, EMA counters, random state.

``model.safetensors`` and ``ema.safetensors`` hold the online and EMA weights; ``state.pt`` holds the
optimizer state, the EMA counters, the CPU (and CUDA) random state, the step, the open logging
interval (the sums that the next row of metrics.csv averages) and, for distillation runs, the bound
teacher's weights. A resumed run reads them first (:func:`read_state`, before any network is built) and
loads them into the built run (:meth:`RunState.restore`), so that it computes, and logs, exactly what an
uninterrupted run computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import checkpoints as ckpt
from .. import distributed
from ..errors import UserError, first_line
from .ema import EMA
from .interval_means import IntervalMeans


@dataclass(frozen=True)
class SavedState:
    """The weights and training state of checkpoint ``path``, read and checked, not yet loaded."""

    path: Path
    step: int
    online: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    state: dict[str, Any]  # the contents of state.pt


def read_state(path: Path, teacher: bool) -> SavedState:
    """Read the weights and ``state.pt`` of checkpoint ``path``. DamagedCheckpoint when a file is
    unreadable; UserError when a distillation run (``teacher``) reads a checkpoint without a teacher."""
    online = ckpt.read_weights(path / ckpt.ONLINE_WEIGHTS)
    ema = ckpt.read_weights(path / ckpt.EMA_WEIGHTS)
    state = ckpt.load_state(path)
    if teacher and "teacher" not in state:
        raise UserError(f"{path} holds no teacher weights; it was not saved by a distillation run")
    try:
        step = int(state["step"])
    except (ValueError, TypeError) as exc:
        raise ckpt.DamagedCheckpoint(f"{path / ckpt.STATE} holds no step ({first_line(exc)})") from None
    return SavedState(path, step, online, ema, state)


@dataclass
class RunState:
    """The plain modules and optimizer of a run (never their DDP or compiled views)."""

    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    teacher: nn.Module | None
    device: torch.device
    log_window: IntervalMeans = field(default_factory=IntervalMeans)  # the logging interval under way

    def log_window_state(self) -> dict[str, Any]:
        """The open logging interval summed over processes: call it on every process (one collective)."""
        return self.log_window.state(distributed.all_reduce)

    def to_save(self, log_window: dict[str, Any] | None = None) -> dict[str, Any]:
        """The contents of ``state.pt`` (the step is added by the checkpoint writer); ``log_window``: from
        :meth:`log_window_state`."""
        cuda = self.device.type == "cuda"
        state = {
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if cuda else None,
        }
        if log_window is not None:
            state["log_window"] = log_window
        if self.teacher is not None:
            state["teacher"] = self.teacher.state_dict()
        return state

    def restore(self, saved: SavedState) -> int:
        """Load ``saved`` (weights, then the rest of ``state.pt``) and return its step; DamagedCheckpoint
        when it does not fit this run."""
        path, state = saved.path, saved.state
        ckpt.load_tensors(self.model, saved.online, path / ckpt.ONLINE_WEIGHTS)
        ckpt.load_tensors(self.ema.module, saved.ema, path / ckpt.EMA_WEIGHTS)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.ema.load_state_dict(state["ema"])
            torch.set_rng_state(state["rng_cpu"])
            if self.device.type == "cuda" and state.get("rng_cuda") is not None:
                torch.cuda.set_rng_state(state["rng_cuda"], self.device)
            # the first process holds the interval's sums over every process; the others its keys, at zero
            self.log_window.load_state(state.get("log_window"), self.device, values=distributed.rank() == 0)
            if self.teacher is not None:
                self.teacher.load_state_dict(state["teacher"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise ckpt.DamagedCheckpoint(f"{path / ckpt.STATE} does not fit this run ({first_line(exc)})") from None
        return saved.step
