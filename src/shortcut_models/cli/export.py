"""``shortcut export``: a checkpoint as a diffusers pipeline folder with its model card."""

from __future__ import annotations

import argparse

from ..diffusers.export import INSTALL, export_diffusers
from .arguments import DEVICE, OUT_DIR, Subcommands, comma_list, ints, reporter, step_list


def _class_list(text: str) -> list[int]:
    """An argparse type: class labels separated by commas, e.g. ``0,1,2`` (checked against the model later)."""
    return comma_list(text, ints(0), "class label", "0,1,2")


def register(sub: Subcommands) -> None:
    p = sub.add_parser(
        "export", help=f"write a checkpoint as a diffusers pipeline folder with a model card ({INSTALL})"
    )
    p.add_argument("--format", choices=["diffusers"], default="diffusers", help="the format (diffusers)")
    p.add_argument("--ckpt", required=True, help="checkpoint directory, run directory (latest checkpoint) or hub id")
    p.add_argument("--out", type=OUT_DIR, required=True, help="new (or empty) directory for the pipeline")
    p.add_argument("--grid-steps", type=step_list, default=[1, 2, 4], help="step counts of the card's sample grid")
    p.add_argument(
        "--grid-classes", type=_class_list, help="classes of the sample grid, e.g. 0,1,2 (default 0, 1, ...)"
    )
    p.add_argument(
        "--eval",
        dest="eval_results",
        metavar="DIR",
        help="a `shortcut eval --out` directory of this checkpoint: its scores go on the card",
    )
    p.add_argument("--repo-id", help="the name the card's code loads, e.g. owner/name on the hub (default: --out)")
    p.add_argument("--license", default="mit", help="licence of the weights for the card's metadata (default mit)")
    p.add_argument("--dataset", help="the training data's name for the card (default: the run's data)")
    p.add_argument("--device", type=DEVICE, default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    done = export_diffusers(
        args.ckpt,
        args.out,
        device=args.device,
        grid_steps=args.grid_steps,
        grid_labels=args.grid_classes,
        eval_results=args.eval_results,
        repo_id=args.repo_id,
        license=args.license,
        dataset=args.dataset,
        report=reporter(args.quiet),
    )
    scores = f"{done.scores} row(s) of scores" if done.scores else "no scores (none measured for this checkpoint)"
    print(
        f"exported {done.checkpoint} (step {done.step}) to {done.out}: model card with {scores}; the pipeline's "
        f"samples equal the checkpoint's within {done.max_difference:.3g}"
    )
    print(
        f"use: from shortcut_models.diffusers import ShortcutPipeline; ShortcutPipeline.from_pretrained({str(done.out)!r})"
    )
    return 0
