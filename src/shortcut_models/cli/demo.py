"""``shortcut demo``: flow matching against shortcut models on unconditional digits, with a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.digits import IMAGE_SHAPE, NUM_CLASSES
from ..errors import UserError
from ..experiments import DemoPlan, run_demo
from ..experiments.demo import demo_study
from ..experiments.study_runs import check_run_configs
from ..inference import load_model
from .arguments import OUT_DIR, Subcommands
from .quick import QUICK_EVAL_NUM, QUICK_STEPS, quick_budget
from .writer_lock import one_writer


def register(sub: Subcommands) -> None:
    p = sub.add_parser("demo", help="flow matching vs shortcut on unconditional digits, with a report")
    p.add_argument("--out", type=OUT_DIR, default="runs/demo", help="output directory (resumable)")
    p.add_argument("--conditional-ckpt", help="a class-conditional digits checkpoint to add to the report")
    p.add_argument("--quick", action="store_true", help="tiny budget for smoke tests")
    p.add_argument(
        "--finetune",
        action="store_true",
        help="add flow matching fine-tuned into shortcut at 10%%, 25%%, 50%% of the budget (~10 more minutes)",
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for both models")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    common = {
        "conditional_ckpt": args.conditional_ckpt,
        "finetune_fractions": (0.1, 0.25, 0.5) if args.finetune else (),
    }
    if args.quick:
        budget = quick_budget([f"steps={QUICK_STEPS}", *args.overrides])
        plan = DemoPlan(**budget, **common, track_every=2, track_num=QUICK_EVAL_NUM, eval_steps=(1, 2, 4, 128))
    else:
        plan = DemoPlan(overrides=list(args.overrides), **common)
    check_inputs(Path(args.out), plan)
    with one_writer(args.out, "demo"):
        report = run_demo(Path(args.out), plan, progress=not args.quiet)
    print(f"report: {report}")
    return 0


def check_inputs(out: Path, plan: DemoPlan) -> None:
    """Refuse what the demo would refuse later, before it writes or trains anything (UserError, exit 2): the
    overrides, as `shortcut train` checks them for every run of the demo's study, and ``--conditional-ckpt``,
    which must load and be a class-conditional digits model."""
    check_run_configs(out, demo_study(plan))
    if plan.conditional_ckpt:
        try:
            model = load_model(plan.conditional_ckpt, "cpu")
        except UserError as exc:
            raise UserError(f"--conditional-ckpt: {exc}") from None
        if tuple(model.data_shape) != IMAGE_SHAPE or model.num_classes != NUM_CLASSES:
            raise UserError(
                f"--conditional-ckpt {plan.conditional_ckpt}: not a class-conditional digits checkpoint (it draws "
                f"samples of shape {list(model.data_shape)} with {model.num_classes} classes; one of "
                f"`shortcut train --preset digits` is needed)"
            )
