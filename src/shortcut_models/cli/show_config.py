"""``shortcut config``: the resolved configuration of a run, by section, with each key's meaning and range."""

from __future__ import annotations

import argparse

from ..config import PRESETS, build_config, describe_config
from ..experiments import check_config
from ..objectives import OBJECTIVES
from .arguments import Subcommands


def register(sub: Subcommands) -> None:
    p = sub.add_parser(
        "config",
        help="print a run's configuration by section: every key's value, meaning and allowed values",
        description="Print the configuration `shortcut train` would run with the same options, as a TOML file "
        "(`shortcut train --config FILE` reads it back).",
    )
    p.add_argument("--preset", help=f"named preset: {', '.join(PRESETS)} (default: digits)")
    p.add_argument("--objective", choices=list(OBJECTIVES), help="training objective (default: the preset's)")
    p.add_argument("--config", help="JSON or TOML file of config values")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, e.g. optim.lr=3e-4 steps=500")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args.preset, args.objective, args.config, args.overrides)
    check_config(cfg)  # what `shortcut train` refuses is refused here too
    print(describe_config(cfg), end="")
    return 0
