"""Refuse, before training, a batch that cannot fit in the device's memory.

Two lower bounds, both measured rather than guessed:

- the step's data: every step builds its targets for all of a process's rows at once (the clean
  rows, the noisy rows and the regression targets: three tensors of the sample's size per row),
  whatever ``grad_accum`` is;
- the micro-batch's activations: the bytes autograd keeps for the backward pass of one row, measured
  as the difference between a forward pass of two rows and one of one row (saved tensors, each
  storage counted once, under the run's autocast), times the rows of a micro-batch.

A batch is refused when these alone exceed the device's total memory (RAM, within a cgroup limit,
for the CPU): the step's data before the run is resolved (:func:`check_data_fits`), the micro-batch once
its network is built (:func:`check_batch_fits`). The check is conservative: a batch it passes may still run out of memory, but a batch
it refuses could never run.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
_GB = 2**30


def device_memory(device: torch.device) -> int:
    """Total bytes of ``device``: the GPU's memory, or the machine's RAM within its cgroup limit."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in _CGROUP_LIMITS:
        with contextlib.suppress(OSError, ValueError):
            total = min(total, int(Path(limit).read_text().strip()))  # "max": no limit (ValueError)
    return total


def _saved_bytes(model: nn.Module, x: torch.Tensor, num_classes: int, amp_dtype: torch.dtype | None) -> int:
    """Bytes of the distinct storages autograd saves for the backward of one forward pass on ``x``."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    rows = x.shape[0]
    t = torch.zeros(rows, device=x.device)
    y = torch.full((rows,), num_classes, dtype=torch.long, device=x.device)
    amp = torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    with torch.enable_grad(), amp, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x, t, t, y)
    return sum(storages.values())


def activation_bytes_per_row(
    model: nn.Module, sample_shape: tuple[int, ...], num_classes: int, device: torch.device, amp_dtype
) -> int:
    """Bytes autograd keeps per training row of ``model`` (two forward passes of 1 and 2 zero rows)."""
    one, two = (
        _saved_bytes(model, torch.zeros(n, *sample_shape, device=device), num_classes, amp_dtype) for n in (1, 2)
    )
    return max(two - one, 0)


def check_data_fits(sample_shape: tuple[int, ...], rows_per_process: int, device: torch.device) -> int:
    """UserError naming ``batch_size`` when one step's data alone cannot fit on ``device`` (checked before
    anything is built or read); returns the bytes of the step's data."""
    memory = device_memory(device)
    data = 3 * rows_per_process * 4 * int(torch.Size(sample_shape).numel())
    if data > memory:
        raise UserError(
            f"batch_size: {rows_per_process} rows per process need at least {data / _GB:.1f} GB for one step's "
            f"data on {_where(device, memory)}, whatever grad_accum is; use a smaller batch_size"
        )
    return data


def _where(device: torch.device, memory: int) -> str:
    return f"{device.type} ({memory / _GB:.1f} GB)"


def check_batch_fits(
    model: nn.Module,
    sample_shape: tuple[int, ...],
    num_classes: int,
    rows_per_process: int,
    grad_accum: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> None:
    """UserError naming ``batch_size``, ``batch_per_gpu`` and ``grad_accum`` when a step cannot fit."""
    data = check_data_fits(sample_shape, rows_per_process, device)
    memory = device_memory(device)
    per_row = activation_bytes_per_row(model, sample_shape, num_classes, device, amp_dtype)
    micro = rows_per_process // grad_accum
    if data + micro * per_row > memory:
        fits = max(1, (memory - data) // max(per_row, 1))
        raise UserError(
            f"batch_size: micro-batches of {micro} rows need at least {(data + micro * per_row) / _GB:.1f} GB on "
            f"{_where(device, memory)}; set batch_per_gpu to at most {fits} rows (or raise grad_accum) so each "
            "micro-batch fits"
        )
