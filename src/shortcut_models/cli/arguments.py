"""Argument types shared by the commands: each turns the text into a value or fails with one line
(argparse adds the option's name; the command line turns it into exit code 2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import UserError
from ..guidance import check_interval
from ..sampling import check_steps
from ..seeding import MAX_SEED
from ..validation import check_device, check_float, check_int, check_output

T = TypeVar("T")
Subcommands = argparse._SubParsersAction  # what ``add_subparsers`` returns; each command adds its parser to it


def checked(convert: Callable[[str], Any], check: Callable[..., Any], *bounds: Any) -> Callable[[str], Any]:
    """An argparse type: ``convert(text)`` (the text itself if it does not convert), then ``check``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = text
        try:
            return check("", value, *bounds)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).strip()) from None

    return parse


def ints(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (no upper bound when ``high`` is None)."""
    return checked(int, check_int, low, high)


FINITE = checked(float, check_float)
DEVICE = checked(str, check_device)
SEED = ints(0, MAX_SEED)
POSITIVE = ints(1)
OUT_DIR = checked(str, check_output, True)
OUT_FILE = checked(str, check_output, False)


def reporter(quiet: bool) -> Callable[[str], None]:
    """Where a command's progress lines go: stderr, or nowhere with ``--quiet``."""
    return (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))


def comma_list(text: str, convert: Callable[[str], T], what: str, example: str) -> list[T]:
    """Values separated by commas, each through ``convert``; refused in one line: no value at all, an
    empty item (``1,,2``, a trailing comma) and a value given twice."""
    items = [item.strip() for item in text.split(",")]
    if items == [""]:
        raise argparse.ArgumentTypeError(f"needs at least one {what}, e.g. {example}; got {text!r}")
    if "" in items:
        raise argparse.ArgumentTypeError(f"empty item in {text!r}; separate {what}s by single commas, e.g. {example}")
    values = [convert(item) for item in items]
    for i, value in enumerate(values):
        if value in values[:i]:
            raise argparse.ArgumentTypeError(f"{value} appears twice in {text!r}; give each {what} once")
    return values


def _step_count(text: str) -> int:
    try:
        value: object = int(text)
    except ValueError:
        value = text
    try:
        return check_steps(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def step_list(text: str) -> list[int]:
    """An argparse type: step counts from 1 to 128 separated by commas, e.g. ``1,2,4``."""
    return comma_list(text, _step_count, "step count", "1,2,4")


def one_step(text: str) -> int:
    """An argparse type: one step count from 1 to 128 (read as a step list of one item)."""
    steps = step_list(text)
    if len(steps) != 1:
        raise argparse.ArgumentTypeError(f"takes one step count for sample, got {text}; eval compares several")
    return steps[0]


def add_cfg_interval(parser: argparse.ArgumentParser) -> None:
    """``--cfg-interval LO,HI``: where guidance applies, for models trained with the guidance input (iMF)."""
    parser.add_argument(
        "--cfg-interval",
        type=time_interval,
        default=None,
        metavar="LO,HI",
        help="times where guidance applies (t = 0 noise), for models with the guidance input; default 0,1",
    )


def use_cfg_interval(loaded: Any, interval: tuple[float, float] | None) -> None:
    """Set ``--cfg-interval`` on a loaded model; UserError when it has no guidance input."""
    if interval is None:
        return
    if not loaded.guidance_input:
        raise UserError("--cfg-interval needs a model trained with the guidance input (objective imf)")
    loaded.cfg_interval = interval


def time_interval(text: str) -> tuple[float, float]:
    """An argparse type: two times ``LO,HI`` with 0 <= LO <= HI <= 1, e.g. ``0.35,0.6``."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError(f"needs two times LO,HI, e.g. 0.35,0.6; got {text!r}")
        return check_interval(float(parts[0]), float(parts[1]))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
