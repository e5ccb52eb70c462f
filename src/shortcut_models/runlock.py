"""One writer per run or output directory: an advisory lock on ``DIR/.lock`` held for the whole command.

``train`` holds it on its run directory; ``eval``, ``encode``, ``demo`` and ``study`` on their ``--out``
(a second process on the same directory exits 2 naming the holder and its command).

The lock is a ``flock`` on the file; the file holds who took it (host, pid, start time) so that a second
writer can be told who holds it. The operating system drops a ``flock`` when its process ends, however
it ends (``kill -9`` included), so a lock left by a killed process is taken over by the next writer
without any guessing about whether that process still lives; the stale holder found in the file is
named in a note. Within one process the lock is shared: several :class:`RunLock` handles on one
directory count references (a notebook that builds a second trainer is no second writer).

Readers of checkpoints (``shortcut sample``, ``shortcut eval --ckpt``) take no lock. On file systems without ``flock``
support (or without ``fcntl``: not a POSIX system) the run goes on unlocked, with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
import weakref
from pathlib import Path

from .errors import UserError
from .outputs import failure

try:
    import fcntl
except ImportError:  # not a POSIX system: runs go unlocked, with a warning
    fcntl = None

LOCK_FILE = ".lock"
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)  # the disk cannot take the file

# realpath of a run directory -> [open lock file, number of live handles in this process]
_held: dict[str, list] = {}


class RunLock:
    """A held lock on a run directory; :meth:`release` (idempotent, also run when the handle is collected)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._finalizer = weakref.finalize(self, _drop, key)

    def release(self) -> None:
        self._finalizer()

    @property
    def held(self) -> bool:
        return self._finalizer.alive


def acquire(run_dir: str | Path, use: str = "training run") -> RunLock:
    """Lock ``run_dir`` (created if missing) for writing; UserError naming the holder when another
    process has it. Prints a note when the previous holder was killed without releasing it.

    ``use`` names what holds the lock in that message (e.g. "training run", "shortcut eval")."""
    run_dir = Path(run_dir)
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key][1] += 1
        return RunLock(key)
    path = run_dir / LOCK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")  # noqa: SIM115 - kept open while the lock is held
    except OSError as exc:
        if exc.errno in _NO_ROOM:  # the disk, not the path: a failed write (exit 1), as for every other file
            raise failure(path, exc) from None
        raise UserError(f"cannot use {run_dir} as a run directory: {exc.strerror or exc}") from None
    locked = True
    try:
        if fcntl is None:
            raise OSError(errno.ENOSYS, "no flock on this system")
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        info = _read(fh)
        fh.close()
        raise UserError(
            f"{run_dir} is in use by another {info.get('use', 'training run')} ({_describe(info)}); "
            "wait for it to finish, stop it, or choose another --out"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            fh.close()
            raise
        print(f"warning: {path}: this file system cannot lock files; nothing stops a second writer", file=sys.stderr)
        locked = False
    stale = _read(fh)
    if stale and locked:
        print(
            f"note: taking over the lock of {run_dir} left by a run that ended without releasing it ({_describe(stale)})",
            file=sys.stderr,
        )
    info = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "use": use,
    }
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(info) + "\n")
        fh.flush()
    except OSError as exc:  # a full disk, a quota, a file-size limit: the one line of a failed write, exit 1
        with contextlib.suppress(OSError):  # closing flushes again, and fails again on a full disk
            fh.close()
        raise failure(path, exc) from None
    _held[key] = [fh, 1]
    return RunLock(key)


def _drop(key: str) -> None:
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    fh = _held.pop(key)[0]
    try:
        fh.seek(0)
        fh.truncate()  # an empty file: released cleanly (a holder left in it was killed)
        fh.flush()
    except OSError:
        pass
    fh.close()  # closing drops the flock


def _read(fh) -> dict:
    try:
        fh.seek(0)
        info = json.loads(fh.read() or "{}")
    except (OSError, ValueError):
        return {"pid": "?"}
    return info if isinstance(info, dict) else {"pid": "?"}


def _describe(info: dict) -> str:
    if not info:
        return "holder not yet recorded"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}"
