"""``shortcut study``: flow matching, shortcut, the paper's baselines and MeanFlow on one network,
ranked in a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments import StudyPlan, run_study
from .arguments import POSITIVE, Subcommands


def register(sub: Subcommands) -> None:
    p = sub.add_parser(
        "study", help="flow matching, shortcut, the paper's baselines and MeanFlow on one network, ranked in a report"
    )
    p.add_argument("--out", default="runs/study", help="output directory (resumable)")
    p.add_argument("--steps", type=POSITIVE, help="training steps of every method (default 4000)")
    p.add_argument("--eval-num", type=POSITIVE, help="samples per method and step count (default 2000)")
    p.add_argument("--quick", action="store_true", help="tiny budget for smoke tests")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every method")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    plan = StudyPlan(overrides=list(args.overrides))
    if args.steps is not None:
        plan.steps = args.steps
    if args.eval_num is not None:
        plan.eval_num = args.eval_num
    if args.quick:  # a smoke-test budget: seconds, not minutes (numbers are meaningless)
        plan = StudyPlan(
            overrides=["model=DiT-Nano", "log_every=2", "batch_size=16", "sample_steps=[1]", *args.overrides],
            steps=4,
            eval_num=20,
            timing_repeats=2,
        )
    report = run_study(Path(args.out), plan, progress=not args.quiet)
    print(f"report: {report}")
    return 0
