"""The views of the networks that a training step calls: DistributedDataParallel and torch.compile.

Views share their parameters with the plain modules (checkpoints save the plain ones):

- ``train_model``: what the loss calls; DDP around the model under torchrun, compiled with ``compiled``;
- ``teacher_ema``: the EMA network as teacher (compiled with ``compiled``);
- ``teacher_online``: the online network as teacher. Under DDP it bypasses the DDP wrapper: a no-grad
  call must not be a collective.

On CUDA, TF32 matmuls and convolutions are switched on (the autocast keeps parameters in fp32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import distributed


@dataclass
class TrainingViews:
    """The networks as a training step calls them (see the module docstring)."""

    ddp: nn.Module | None  # the DistributedDataParallel wrapper, None in a single process
    train_model: nn.Module
    teacher_ema: nn.Module
    teacher_online: nn.Module


def wrap_for_training(
    model: nn.Module, ema_module: nn.Module, compiled: bool, device: torch.device, world: int
) -> TrainingViews:
    """The views of ``model`` and ``ema_module`` for ``world`` processes on ``device``."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ddp = distributed.wrap_ddp(model, device) if world > 1 else None
    net = ddp if ddp is not None else model
    train_model = torch.compile(net) if compiled else net
    teacher_ema = torch.compile(ema_module) if compiled else ema_module
    plain = (torch.compile(model) if compiled else model) if ddp is not None else None
    return TrainingViews(ddp, train_model, teacher_ema, train_model if plain is None else plain)
