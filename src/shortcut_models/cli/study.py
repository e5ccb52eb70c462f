"""``shortcut study``: every few-step method on one network, several seeds, two recipes, two domains,
ranked in a report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from ..errors import UserError
from ..experiments import StudyPlan, full_plan, run_study
from ..experiments.study_answers import read_answers
from ..experiments.study_estimate import estimate_lines, measure_rates
from ..experiments.study_plan import DEFAULT_METHODS, TEACHER, registered_methods
from ..experiments.study_runs import check_run_configs
from ..validation import check_device
from .arguments import OUT_DIR, POSITIVE, Subcommands
from .quick import QUICK_STEPS, quick_budget
from .writer_lock import one_writer

QUICK_STUDY = {"seeds": (0, 1), "toy_steps": QUICK_STEPS, "toy_num": 64}
"""--quick's study sizes besides the shared quick budget: two seeds (so intervals exist), a tiny toy run."""


def method_list(text: str) -> tuple[str, ...]:
    """'flow,meanflow' -> ('flow', 'meanflow'), in the study's order (the registry's), flow matching added;
    'all': every registered method; unknown, empty or repeated names refused."""
    if text.strip() == "all":
        return registered_methods()
    names = [n.strip() for n in text.split(",")]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated method names without empty or repeated items, got {text!r}"
        )
    methods = registered_methods()
    unknown = [n for n in names if n not in methods]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(methods)}")
    return tuple(m for m in methods if m in names or m == TEACHER)


def study_device(text: str) -> str:
    """cpu, cuda or cuda:N, where this machine has it."""
    try:
        device = check_device("--device", text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if device == "auto":
        raise argparse.ArgumentTypeError("--device must be cpu, cuda or cuda:N (the study names where it runs)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"--device {device}: this machine has no CUDA GPU that PyTorch can use")
    return device


def register(sub: Subcommands) -> None:
    p = sub.add_parser(
        "study",
        help="every few-step method on one network, several seeds and two recipes, ranked in a report",
    )
    p.add_argument("--out", type=OUT_DIR, default="runs/study", help="output directory (resumable)")
    p.add_argument(
        "--full",
        action="store_true",
        help="the whole study: every method, scored at 200, 400 and 800 steps and doubled while the answer moves "
        "(--max-steps), 2 more seeds for the leaders, MeanFlow's recipe, the ablation and fine-tuning (hours on "
        "2 CPU cores)",
    )
    p.add_argument(
        "--steps",
        type=POSITIVE,
        help="largest training budget of the digits runs (default 1600; with --full the first stage's, 800, scored "
        "also at 1/4 and 1/2 of it)",
    )
    p.add_argument(
        "--max-steps",
        type=POSITIVE,
        help="with --full: double the largest budget while the answer still moves, up to this many steps "
        "(default 1600, the default study's budget; larger on a GPU)",
    )
    p.add_argument(
        "--device",
        type=study_device,
        default="cpu",
        help="where the runs train and are scored: cpu (default), cuda or cuda:N (--jobs runs share the device)",
    )
    p.add_argument("--eval-num", type=POSITIVE, help="digits samples per run and step count (default 1000)")
    p.add_argument(
        "--methods",
        type=method_list,
        help=f"comma-separated methods to study, or all (default: {', '.join(DEFAULT_METHODS)}; with --full all "
        f"{len(registered_methods())}; flow is always included: it is the distillation teacher)",
    )
    p.add_argument(
        "--jobs",
        type=POSITIVE,
        default=min(2, os.cpu_count() or 1),
        help="runs trained at once, each in its own process (default: 2 where there are 2 cores; the numbers "
        "do not depend on it)",
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny budget for smoke tests (--steps and --eval-num still apply)"
    )
    p.add_argument(
        "--compare-with",
        metavar="ANSWERS_JSON",
        help="another study's answers file (its OUT/answers.json; `make study` passes the committed full study's, "
        "docs/study/full/answers.json): the short answer says whether the best method at 1, 2 and 4 steps agrees "
        "with it; a missing file is noted in the report",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print each stage's runs, training steps, scores and estimated time, then stop: nothing is trained "
        "or written (the times come from a step and a score measured now, in seconds: run it on an otherwise "
        "idle machine)",
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every digits run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    compare_with = read_answers(Path(args.compare_with)) if args.compare_with else None  # malformed: exit 2, no work
    if args.quick:
        budget = {**quick_budget(args.overrides), **QUICK_STUDY, "steps": QUICK_STEPS}
    else:
        budget = {"overrides": list(args.overrides)}
    if args.steps is not None:  # given with --quick too: the explicit value wins
        budget["steps"] = args.steps
    if args.max_steps is not None:
        if not args.full:
            raise UserError("--max-steps applies to --full only (the default study has one budget: --steps)")
        budget["max_steps"] = args.max_steps
    budget["device"] = args.device
    if args.eval_num is not None:
        budget["eval_num"] = args.eval_num
    if args.methods is not None:
        budget["methods"] = args.methods
    plan = full_plan(**budget) if args.full else StudyPlan(**budget)
    plan.budgets = tuple(b for b in plan.budgets if b < plan.steps)  # --steps may be below --full's budgets
    check_run_configs(Path(args.out), plan)
    if args.dry_run:
        threads = max(1, torch.get_num_threads() // args.jobs)  # what one job gets (study.execute)
        print(f"shortcut study{' --full' if args.full else ''}: a dry run (nothing is trained or written)")
        print("\n".join(estimate_lines(plan, args.jobs, measure_rates(plan, threads))))
        return 0
    with one_writer(args.out, "study"):
        report = run_study(Path(args.out), plan, not args.quiet, args.jobs, compare_with)
    print(f"report: {report}")
    return 0
