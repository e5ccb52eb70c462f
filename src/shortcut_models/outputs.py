"""One way to write an output file: whole or not at all.

Every command writes its files (samples, metrics, figures, statistics, reports, cache shards) through
:func:`writing`: the content goes to a temporary name beside the target (``.NAME.PID.tmp``), is
flushed to the disk (fsync) and renamed over the target, so a reader sees the old file or the new
one, never half of one. On a failure the temporary file is removed, an existing target is left as
it was, and :class:`~shortcut_models.errors.WriteFailed` names the file and the cause in words (the
disk is full, the file-size limit, permissions, a read-only file system); the command line prints
it as one line and exits 1. A temporary file left by a killed process is removed by the next write
of the same file (when that process no longer runs).

A target that is a symbolic link to a file is written through the link (the file it points to is
replaced). Files get the permissions the umask gives, as any file the user creates.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import WriteFailed

CAUSES = {
    errno.ENOSPC: "no space left on the disk",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file would exceed the file-size limit (ulimit -f)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "a symbolic link loop",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "a directory is in the way",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EIO: "an input/output error of the disk",
}
_RUST_IO = re.compile(r"Os \{ code: (\d+)|\(os error (\d+)\)")  # how safetensors (Rust) reports an OS error


def cause(exc: BaseException) -> OSError | None:
    """The operating-system error behind ``exc`` (itself, its cause or context, or one a library
    reported in its message), or None when the failure was not one of writing."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        found = _RUST_IO.search(str(exc))
        if found:
            code = int(found.group(1) or found.group(2))
            return OSError(code, os.strerror(code))
        exc = exc.__cause__ or exc.__context__
    return None


def describe(error: OSError) -> str:
    """The cause of a failed write in words."""
    return CAUSES.get(error.errno, error.strerror or str(error))


def failure(path: str | os.PathLike, error: OSError) -> WriteFailed:
    """The one-line error of a failed write of ``path``."""
    return WriteFailed(f"cannot write {os.fspath(path)}: {describe(error)}")


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends, flush it to the disk and rename it
    to ``path``. On any failure the temporary file is removed and ``path`` is untouched; a failure of
    the operating system (disk full, file-size limit, permissions...) raises WriteFailed naming ``path``.
    Missing parent directories are created."""
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # some writers (safetensors) create their files 0600
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        error = cause(exc) if isinstance(exc, Exception) else None
        if error is None:
            raise
        raise failure(path, error) from exc


@contextlib.contextmanager
def writing_dir(path: str | os.PathLike) -> Iterator[Path]:
    """:func:`writing` for a directory: yield a temporary directory beside ``path`` (``.NAME.PID.tmp``); when
    the block ends, flush its files to the disk and rename it to ``path``, which must be absent or an empty
    directory. On any failure the temporary directory is removed and ``path`` is untouched (WriteFailed for
    a failure of the operating system); one left by a killed process is removed by the next write of ``path``."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        yield tmp
        mode = 0o666 & ~_umask()
        for file in (f for f in tmp.rglob("*") if f.is_file()):
            os.chmod(file, mode)  # some writers (safetensors) create their files 0600
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
        if target.is_dir():
            target.rmdir()  # empty: a directory that holds files is never replaced
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        error = cause(exc) if isinstance(exc, Exception) else None
        if error is None:
            raise
        raise failure(path, error) from exc


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` as the whole content of ``path`` (see :func:`writing`)."""
    with writing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` (UTF-8) as the whole content of ``path``."""
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> None:
    """``data`` as indented JSON, with a final newline."""
    write_text(path, json.dumps(data, indent=indent) + "\n")


def write_with(path: str | os.PathLike, write: Callable[[Any], None], binary: bool = True) -> None:
    """``write(file)`` fills an open file (binary, or text with ``binary=False``) that becomes ``path``:
    for writers that take a file object (numpy, matplotlib, PIL, csv)."""
    with writing(path) as tmp, open(tmp, "wb" if binary else "w", newline=None if binary else "") as fh:
        write(fh)


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """numpy arrays as an uncompressed ``.npz`` named exactly ``path``."""
    import numpy as np

    write_with(path, lambda fh: np.savez(fh, **arrays))


def save_figure(fig: Any, path: str | os.PathLike) -> None:
    """A matplotlib figure as a PNG at ``path``."""
    write_with(path, lambda fh: fig.savefig(fh, format="png"))


def ignore_file_size_signal() -> None:
    """Make a write past the file-size limit (``ulimit -f``) fail with an error (EFBIG) rather than
    end the process: SIGXFSZ ignored. CPython does this at start-up; programs embedding the package
    may not. Only possible from the main thread; elsewhere (and without SIGXFSZ) nothing changes."""
    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def tidy(directory: str | os.PathLike) -> int:
    """Remove every temporary file of :func:`writing` under ``directory`` (all levels) whose process no
    longer runs: what kills left of writes that no later write of the same file will replace (a
    finished run's sample sheets). Run by a writer that holds the directory's lock. Returns the count."""
    removed = 0
    for root, _, files in os.walk(directory):
        for name in files:
            if _stale(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(root, name))
                    removed += 1
    return removed


def _stale(name: str) -> bool:
    """Whether ``name`` is ``.NAME.PID.tmp`` (a temporary file of :func:`writing`) of a dead process."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    pid = name[: -len(".tmp")].rsplit(".", 1)[-1]
    return pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))


def _remove_stale(target: Path) -> None:
    """Remove temporary files (or directories) of ``target`` left by processes that no longer run (a kill -9)."""
    prefix = f".{target.name}."
    with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
        for entry in entries:
            if entry.name.startswith(prefix) and _stale(entry.name):
                with contextlib.suppress(OSError):
                    shutil.rmtree(entry.path) if entry.is_dir(follow_symlinks=False) else os.unlink(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
