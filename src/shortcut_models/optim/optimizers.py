"""The optimisers a run may name (config key ``optimizer``), one function each.

An optimiser is a function ``(params, settings, fused) -> torch.optim.Optimizer``: ``params`` the
network's parameters, ``settings`` the run's configuration (read through :class:`OptimizerSettings`),
``fused`` whether to ask for the fused CUDA kernel (True on CUDA only). Adding one is one function
here and one line in :data:`OPTIMIZERS`; the configuration, the command line and the trainer read
their choices from that dictionary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import torch


class OptimizerSettings(Protocol):
    """The configuration keys an optimiser reads (``TrainConfig`` has them all)."""

    lr: float
    beta1: float  # Adam(W): decay of the first moment
    beta2: float  # Adam(W): decay of the second moment
    weight_decay: float  # AdamW: decoupled; Adam and SGD: added to the gradient (L2)
    momentum: float  # SGD only


Params = Iterable[torch.nn.Parameter]
OptimizerFn = Callable[[Params, OptimizerSettings, bool], torch.optim.Optimizer]


def kernels(fused: bool) -> dict[str, bool]:
    """The fused CUDA kernel when asked, otherwise the multi-tensor ("foreach") one: on the CPU it gives the
    same numbers as the per-tensor loop PyTorch picks there by default, bit for bit (tested), in fewer
    operations (about 6% of a training step of the study's small network)."""
    return {"fused": True} if fused else {"foreach": True}


def adamw(params: Params, s: OptimizerSettings, fused: bool) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay), the paper's optimiser and the default."""
    return torch.optim.AdamW(params, lr=s.lr, betas=(s.beta1, s.beta2), weight_decay=s.weight_decay, **kernels(fused))


def adam(params: Params, s: OptimizerSettings, fused: bool) -> torch.optim.Optimizer:
    """Adam; ``weight_decay`` is an L2 term added to the gradient."""
    return torch.optim.Adam(params, lr=s.lr, betas=(s.beta1, s.beta2), weight_decay=s.weight_decay, **kernels(fused))


def sgd(params: Params, s: OptimizerSettings, fused: bool) -> torch.optim.Optimizer:
    """SGD with heavy-ball ``momentum`` (0 = plain SGD); ``weight_decay`` is an L2 term."""
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, **kernels(fused))


OPTIMIZERS: dict[str, OptimizerFn] = {
    "adamw": adamw,
    "adam": adam,
    "sgd": sgd,
}
