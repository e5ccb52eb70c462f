"""One writer per output directory for the commands that fill one (``eval``, ``encode``, ``demo``,
``study``), as ``train`` has for its run directory: ``OUT/.lock`` is held for the whole command, and a
second process on the same ``--out`` exits 2 naming the holder (host, pid, start time, command)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .. import outputs, runlock


@contextlib.contextmanager
def one_writer(out: str | Path, command: str) -> Iterator[None]:
    """Hold ``out``'s lock while the block runs (rank 0 only under torchrun: the one process that
    writes), first removing what killed writes left in it (``outputs.tidy``). A directory that this call created and that holds nothing but the lock at the end
    (the command failed before writing) is removed again."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    out = Path(out)
    created = not out.exists()
    lock = runlock.acquire(out, f"shortcut {command}")
    try:
        outputs.tidy(out)  # temporary files of writes cut short by a kill
        yield
    finally:
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                if [p.name for p in out.iterdir()] == [runlock.LOCK_FILE]:
                    (out / runlock.LOCK_FILE).unlink()
                    out.rmdir()
