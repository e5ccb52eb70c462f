"""Argument types shared by the commands: each turns the text into a value or fails with one line
(argparse adds the option's name; the command line turns it into exit code 2)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..sampling import check_steps
from ..seeding import MAX_SEED
from ..validation import check_device, check_float, check_int, check_output

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


def step_list(text: str) -> list[int]:
    """An argparse type: step counts separated by commas, e.g. ``1,2,4``."""
    try:
        steps = [check_steps(int(s)) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) if "steps" in str(exc) else f"bad step list {text!r}") from None
    if not steps:
        raise argparse.ArgumentTypeError(f"needs at least one step count, e.g. 1,2,4; got {text!r}")
    return steps
