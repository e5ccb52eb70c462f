"""The ``shortcut`` command: train, sample, eval, encode, ref-stats, convert, export, demo and study, one module
each (its arguments next to its handler); this module parses and turns errors into exit codes.

Exit codes: 0 success; 2 bad input (one line on stderr, no traceback; a second writer on a run or output
directory in use, a checkpoint that could run code or none intact included); 1 work that could not
complete (training diverged, a write failed, e.g. a full disk, samples came out NaN; one line) or an
internal error; 75 (EX_TEMPFAIL) training stopped by SIGTERM/SIGINT after saving its checkpoint: run the
same command again to continue (schedulers may requeue on it); 130 interrupted outside training.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import RunError, UserError
from ..outputs import ignore_file_size_signal
from ..runtime import tune_allocator
from . import convert, demo, encode, evaluate, export, ref_stats, sample, show_config, study, train
from .train import EXIT_STOPPED

__all__ = ["EXIT_STOPPED", "build_parser", "main"]

COMMANDS = (
    train,
    sample,
    evaluate,
    encode,
    convert,
    export,
    demo,
    study,
    ref_stats,
    show_config,
)  # in the order `--help` lists them


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shortcut", description="Train, sample and evaluate shortcut models and flow matching.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; key=value overrides may come between or after options (``--out X steps=5 --quiet``)."""
    args, extra = parser.parse_known_args(argv)
    if hasattr(args, "overrides"):
        args.overrides += [a for a in extra if "=" in a and not a.startswith("-")]
        extra = [a for a in extra if a not in args.overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    tune_allocator()
    ignore_file_size_signal()
    try:
        args = _parse(build_parser(), argv)
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
