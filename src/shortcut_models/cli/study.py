"""``shortcut study``: flow matching, shortcut, the paper's baselines and MeanFlow on one network,
ranked in a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments import StudyPlan, run_study
from .arguments import OUT_DIR, POSITIVE, Subcommands
from .quick import QUICK_STEPS, quick_budget
from .writer_lock import one_writer


def register(sub: Subcommands) -> None:
    p = sub.add_parser(
        "study", help="flow matching, shortcut, the paper's baselines and MeanFlow on one network, ranked in a report"
    )
    p.add_argument("--out", type=OUT_DIR, default="runs/study", help="output directory (resumable)")
    p.add_argument("--steps", type=POSITIVE, help="training steps of every method (default 4000; 4 with --quick)")
    p.add_argument(
        "--eval-num", type=POSITIVE, help="samples per method and step count (default 2000; 20 with --quick)"
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny budget for smoke tests (--steps and --eval-num still apply)"
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every method")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.quick:
        budget = {**quick_budget(args.overrides), "steps": QUICK_STEPS}
    else:
        budget = {"overrides": list(args.overrides)}
    if args.steps is not None:  # given with --quick too: the explicit value wins
        budget["steps"] = args.steps
    if args.eval_num is not None:
        budget["eval_num"] = args.eval_num
    with one_writer(args.out, "study"):
        report = run_study(Path(args.out), StudyPlan(**budget), progress=not args.quiet)
    print(f"report: {report}")
    return 0
