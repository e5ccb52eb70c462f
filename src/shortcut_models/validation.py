"""Range checks for settings, each failing with one line that names the setting.

Used by the configuration (every numeric key of a run), the objectives (their knobs) and the
networks' builders, so a bad value is rejected with the same wording wherever it is set.
"""

from __future__ import annotations

import errno
import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_int(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in [low, high] (either bound optional); ValueError naming ``name`` otherwise."""
    what = "a positive integer" if (low, high) == (1, None) else f"an integer{_bounds(low, high)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_float(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval given (bounds optional, closed unless ``*_open``)."""
    where = _interval(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number{where}, got {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        raise ValueError(f"{name} must be a number{where}, got {value!r}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool; ValueError naming ``name`` otherwise (no truthy strings or ints)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...] | list[str]) -> str:
    """``value`` if it is one of ``choices``; ValueError listing them otherwise."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return str(value)


def check_device(name: str, value: object) -> str:
    """A device name this package runs on: "auto", "cpu", "cuda" or "cuda:N"."""
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        raise ValueError(f"{name} must be auto, cpu, cuda or cuda:N, got {value!r}")
    return value


def check_output(name: str, value: object, directory: bool) -> Path:
    """An output path that can be written: a directory (``directory``) or a file, existing or to be created.

    Refused: an empty path, a directory where a file goes (or the reverse), a path below a file,
    a symbolic link (on the path or below it) that loops or points nowhere, and a path whose nearest
    existing directory is read-only (file system or permissions). Nothing is created.
    """
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ValueError(f"{name} must name a {'directory' if directory else 'file'}, got {value!r}")
    path = Path(value)
    _check_links(name, path)
    wanted, found = ("directory", "a file") if directory else ("file", "a directory")
    if path.exists() and path.is_dir() != directory:
        raise ValueError(f"{name} {str(path)!r} is {found}, not a {wanted}")
    parent = path if path.is_dir() else path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name} {str(path)!r} lies below {str(parent)!r}, which is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
        why = "is on a read-only file system" if read_only else "is not writable"
        raise ValueError(f"{name} {str(path)!r} cannot be written: {str(parent)!r} {why}")
    return path


def _check_links(name: str, path: Path) -> None:
    """ValueError when ``path`` or a directory above it is a symbolic link that loops or points nowhere."""
    for part in (path, *path.parents):
        if not os.path.islink(part):
            continue
        try:
            os.stat(part)
        except OSError as exc:
            what = "a symbolic link loop" if exc.errno == errno.ELOOP else "a symbolic link to nothing"
            where = "" if part == path else f": {str(part)!r} is {what}"
            raise ValueError(f"{name} {str(path)!r} cannot be written{where or f' (it is {what})'}") from None


def _bounds(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>' if low_open else '>='} {low:g}"
    if low is None:
        return f" {'<' if high_open else '<='} {high:g}"
    return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


# ----------------------------------------------------------------------------- declarative ranges
# A setting's allowed values as an object: called as ``spec(name, value)`` it checks (ValueError naming the
# setting, as the check_* functions above); ``describe()`` says in words what it allows, for listings
# such as `shortcut config`.


@dataclass(frozen=True)
class Int:
    """An integer in [low, high] (either bound optional)."""

    low: int | None = None
    high: int | None = None

    def __call__(self, name: str, value: object) -> int:
        return check_int(name, value, self.low, self.high)

    def describe(self) -> str:
        return (
            "a positive integer" if (self.low, self.high) == (1, None) else f"an integer{_bounds(self.low, self.high)}"
        )


@dataclass(frozen=True)
class PowerOfTwo:
    """A power of two, at least ``low``."""

    low: int = 1

    def __call__(self, name: str, value: object) -> int:
        value = check_int(name, value, low=self.low)
        if value & (value - 1):
            raise ValueError(f"{name} must be a power of two, got {value}")
        return value

    def describe(self) -> str:
        return f"a power of two >= {self.low}"


@dataclass(frozen=True)
class Float:
    """A finite number in the interval given (bounds optional, closed unless ``*_open``)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __call__(self, name: str, value: object) -> float:
        return check_float(name, value, self.low, self.high, self.low_open, self.high_open)

    def describe(self) -> str:
        return f"a number{_interval(self.low, self.high, self.low_open, self.high_open)}"


@dataclass(frozen=True)
class OneOf:
    """One of ``options``: a tuple, or a registry (a mapping) whose keys are read at each check."""

    options: tuple[str, ...] | Mapping[str, object]

    def __call__(self, name: str, value: object) -> str:
        return check_choice(name, value, tuple(self.options))

    def describe(self) -> str:
        return "one of " + ", ".join(self.options)


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def __call__(self, name: str, value: object) -> bool:
        return check_bool(name, value)

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Text:
    """Any string (a path, a name); ``empty`` says what an empty one means."""

    empty: str = ""

    def __call__(self, name: str, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return value

    def describe(self) -> str:
        return f"text; empty: {self.empty}" if self.empty else "text"
