"""Process-wide settings and helpers for speed that do not change results.

``tune_allocator`` keeps freed memory in glibc's heap instead of returning it to the system after
every tensor: on virtual machines where page faults are expensive, a CPU training step of a small
network otherwise spends most of its time faulting fresh pages for each new activation (measured
3.4x slower for the digits DiT on a 2-core VM; see benchmarks/RESULTS.md). It is a no-op off Linux/glibc
and can be disabled with SHORTCUT_MODELS_NO_MALLOPT=1.
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_done = False


def tune_allocator() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; returns True when applied."""
    global _done
    if _done or not sys.platform.startswith("linux") or os.environ.get("SHORTCUT_MODELS_NO_MALLOPT"):
        return _done
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        ok = ok and libc.mallopt(_M_TOP_PAD, 64 << 20)
    except (OSError, AttributeError):
        return False
    _done = bool(ok)
    return _done


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 for 'bf16', and for 'auto' on CUDA; None (plain fp32) otherwise."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Copy a CPU tensor to ``device`` without making the host wait for the GPU.

    To CUDA the tensor goes through pinned memory with ``non_blocking=True``, so the copy is queued
    behind the kernels already launched instead of synchronising with them (a pageable copy would);
    elsewhere this is a plain ``.to(device)``.
    """
    device = torch.device(device)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
