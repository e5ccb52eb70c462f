"""Work refused before it starts when its result cannot fit: an estimate of the bytes a command will
hold in memory and write to the disk, against the memory available and the free space of the disk.

The estimates are lower bounds (the samples themselves, not every temporary copy), so a request that
is refused could never have succeeded; one that passes may still run short, and then fails with one
line (``outputs.writing``).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from .errors import UserError


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (MemAvailable on Linux), None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_disk(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system that holds ``path`` (or would: its nearest existing parent)."""
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return shutil.disk_usage(where).free
    except OSError:
        return None


def size(num_bytes: float) -> str:
    """Bytes in words: "8.0 TB", "512 MB"."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if num_bytes < 1000 or unit == "PB":
            return f"{num_bytes:.0f} {unit}" if unit == "bytes" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1000
    raise AssertionError("unreachable")


def check_room(what: str, memory: float = 0, disk: float = 0, where: str | os.PathLike | None = None) -> None:
    """UserError (exit 2) when ``memory`` bytes exceed the memory available or ``disk`` bytes the free
    space where ``where`` lies; ``what`` names the request (e.g. "--num 1000000000000")."""
    available = available_memory() if memory else None
    if available is not None and memory > available:
        raise UserError(
            f"{what}: the result needs at least {size(memory)} of memory and this machine has "
            f"{size(available)} available; ask for less"
        )
    free = free_disk(where) if disk and where is not None else None
    if free is not None and disk > free:
        raise UserError(
            f"{what}: the output needs at least {size(disk)} on the disk and {where} has {size(free)} free; "
            "ask for less or free some space"
        )


def values(shape: tuple[int, ...] | list[int]) -> int:
    """Numbers in one item of ``shape``."""
    return math.prod(int(s) for s in shape)
