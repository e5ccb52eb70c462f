"""Rows of tensors read on demand from safetensors files: memory of the order of the rows read.

safetensors layout (https://github.com/huggingface/safetensors#format): 8 bytes, a little-endian
unsigned header length H; H bytes of JSON mapping each tensor name to ``{"dtype": "F16", "shape":
[...], "data_offsets": [begin, end]}`` (plus an optional ``"__metadata__"`` object), the offsets
counting from the first byte after the header; then the raw little-endian, row-major tensor bytes.

A :class:`ShardReader` sees several such files ("shards") that hold the same tensors as one table
split along dim 0: global row r lives in the shard whose row range holds it. Rows are read with
``os.pread``: the file pages go to the OS page cache, not to this process's resident memory.
Descriptors are opened lazily, at most ``max_open`` at a time, and reopened after a fork; a reader
pickles without them.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# safetensors dtype code -> little-endian numpy dtype (those a shard of this package may hold)
DTYPES = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "I64": np.dtype("<i8"), "U8": np.dtype("u1")}
MAX_HEADER_BYTES = 100 << 20  # the limit safetensors itself enforces


class ShardError(Exception):
    """A shard that is missing, unreadable or not laid out as expected; ``file`` and ``reason`` say which and why."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file, self.reason = file, reason


@dataclass(frozen=True)
class TensorSlot:
    """Where a tensor lies in its file: dtype code, shape, absolute byte offset and size."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    nbytes: int


def read_exact(fd: int, nbytes: int, offset: int, file: str) -> bytes:
    """``nbytes`` bytes at ``offset`` of ``fd``; ShardError if the file ends first."""
    parts, got = [], 0
    while got < nbytes:
        try:
            chunk = os.pread(fd, nbytes - got, offset + got)
        except OSError as exc:
            raise ShardError(file, f"cannot read: {exc.strerror}") from None
        if not chunk:
            raise ShardError(file, f"truncated: {offset + nbytes} bytes needed, file ends at {offset + got}")
        parts.append(chunk)
        got += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_header(fd: int, file: str) -> dict[str, TensorSlot]:
    """The tensors of a safetensors file (``__metadata__`` left out), checked to lie inside the file."""
    size = os.fstat(fd).st_size
    if size < 8:
        raise ShardError(file, f"truncated: {size} bytes, not a safetensors file")
    (length,) = struct.unpack("<Q", read_exact(fd, 8, 0, file))
    if length > min(size - 8, MAX_HEADER_BYTES):
        raise ShardError(file, f"truncated or not a safetensors file: header of {length} bytes in a file of {size}")
    try:
        header = json.loads(read_exact(fd, length, 8, file))
    except (UnicodeDecodeError, ValueError):
        raise ShardError(file, "header is not valid JSON") from None
    if not isinstance(header, dict):
        raise ShardError(file, "header is not a JSON object")
    data_start, data_size = 8 + length, size - 8 - length
    slots = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
            if not (
                isinstance(dtype, str)
                and all(type(s) is int and s >= 0 for s in shape)
                and type(begin) is int
                and type(end) is int
            ):
                raise TypeError
        except (TypeError, KeyError, ValueError):
            raise ShardError(file, f"malformed header entry for {name!r}") from None
        if not 0 <= begin <= end <= data_size:
            raise ShardError(file, f"truncated: {name} needs bytes [{begin}, {end}) of {data_size} data bytes")
        if dtype in DTYPES and end - begin != int(np.prod(shape, dtype=np.int64)) * DTYPES[dtype].itemsize:
            raise ShardError(file, f"{name}: {end - begin} bytes do not hold {dtype} {list(shape)}")
        slots[name] = TensorSlot(dtype, shape, data_start + begin, end - begin)
    return slots


class ShardReader:
    """Tensors ``columns`` (name -> (dtype code, row shape)) stored in ``paths``, concatenated along dim 0.

    ``counts[k]`` is the number of rows of shard k. Every header is read and checked when the reader
    is made (ShardError on the first bad shard); only headers are kept in memory.
    """

    def __init__(
        self,
        paths: list[Path],
        counts: list[int],
        columns: dict[str, tuple[str, tuple[int, ...]]],
        max_open: int = 64,
    ) -> None:
        if len(paths) != len(counts) or min(counts, default=0) < 0:
            raise ValueError("one non-negative row count per shard is needed")
        self.paths = [Path(p) for p in paths]
        self.columns = {name: (code, tuple(shape)) for name, (code, shape) in columns.items()}
        self.max_open = max(1, int(max_open))
        ends = np.cumsum(np.asarray(counts, dtype=np.int64))
        self._ends, self._starts = ends, ends - np.asarray(counts, dtype=np.int64)
        self.num_rows = int(ends[-1]) if len(ends) else 0
        self._reset()
        self._slots = [self._check(k, count) for k, count in enumerate(counts)]

    def _reset(self) -> None:
        """Forget descriptors (closing them if this process opened them)."""
        self._close_all()
        self._pid, self._open, self._lock = os.getpid(), OrderedDict(), threading.Lock()

    def _close_all(self) -> None:
        for fd in getattr(self, "_open", {}).values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def _guard(self) -> threading.Lock:
        """The lock that serialises reads, after dropping descriptors inherited through a fork."""
        if self._pid != os.getpid():
            self._reset()  # forked (or unpickled): the inherited descriptors and lock belong to the parent
        return self._lock

    def _fd(self, k: int) -> int:
        """An open descriptor of shard k (least recently used ones are closed beyond ``max_open``)."""
        fd = self._open.pop(k, None)
        if fd is None:
            try:
                fd = os.open(self.paths[k], os.O_RDONLY)
            except OSError as exc:
                raise ShardError(self.paths[k].name, f"cannot open: {exc.strerror}") from None
            while len(self._open) >= self.max_open:
                os.close(self._open.popitem(last=False)[1])
        self._open[k] = fd
        return fd

    def _check(self, k: int, count: int) -> dict[str, TensorSlot]:
        file = self.paths[k].name
        slots = read_header(self._fd(k), file)
        for name, (code, row_shape) in self.columns.items():
            if name not in slots:
                raise ShardError(file, f"no tensor {name!r}")
            slot = slots[name]
            if slot.dtype != code:
                raise ShardError(file, f"{name} has dtype {slot.dtype}, expected {code}")
            if slot.shape != (count, *row_shape):
                raise ShardError(file, f"{name} has shape {list(slot.shape)}, expected {[count, *row_shape]}")
        return {name: slots[name] for name in self.columns}

    def _row_bytes(self, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
        code, row_shape = self.columns[name]
        dtype = DTYPES[code]
        return dtype, row_shape, int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize

    def rows(self, name: str, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index`` (int64, global row numbers, repeats allowed) of tensor ``name``, in that order.

        Each distinct row is read once; rows are read in file order, consecutive rows in one call.
        """
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_rows):
            raise IndexError(f"row numbers must lie in [0, {self.num_rows})")
        dtype, row_shape, row_bytes = self._row_bytes(name)
        uniq, inverse = np.unique(idx, return_inverse=True)
        shard = np.searchsorted(self._ends, uniq, side="right")
        local = uniq - self._starts[shard]
        out = np.empty((uniq.size, row_bytes), dtype=np.uint8)
        cuts = np.flatnonzero((np.diff(shard) != 0) | (np.diff(local) != 1)) + 1
        runs = zip([0, *cuts.tolist()], [*cuts.tolist(), uniq.size]) if uniq.size else []
        with self._guard():
            for a, b in runs:
                k = int(shard[a])
                offset = self._slots[k][name].start + int(local[a]) * row_bytes
                data = read_exact(self._fd(k), (b - a) * row_bytes, offset, self.paths[k].name)
                out[a:b] = np.frombuffer(data, dtype=np.uint8).reshape(b - a, row_bytes)
        values = out.view(dtype).astype(dtype.newbyteorder("="), copy=False).reshape(uniq.size, *row_shape)
        return torch.from_numpy(values)[torch.from_numpy(inverse.reshape(-1))]

    def column(self, name: str) -> torch.Tensor:
        """All rows of tensor ``name``, one read per shard (for small per-row metadata)."""
        dtype, row_shape, _ = self._row_bytes(name)
        parts = []
        with self._guard():
            for k, slots in enumerate(self._slots):
                data = read_exact(self._fd(k), slots[name].nbytes, slots[name].start, self.paths[k].name)
                parts.append(np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("=")))
        values = np.concatenate(parts) if parts else np.empty(0, dtype=dtype.newbyteorder("="))
        return torch.from_numpy(values.reshape(self.num_rows, *row_shape))

    def close(self) -> None:
        """Close the open descriptors (they are reopened if rows are read again)."""
        if getattr(self, "_pid", None) == os.getpid():
            self._close_all()
        self._open = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_open=OrderedDict(), _lock=None, _pid=None)  # no descriptors travel: reopened on use
        return state

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown os may be gone
            self.close()
