"""``shortcut train``: train a model into a run directory (resumes from it automatically)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .. import distributed
from ..config import PRESETS, build_config
from ..errors import UserError
from ..experiments import build_trainer, check_config
from ..objectives import OBJECTIVES
from ..validation import check_output
from .arguments import Subcommands

EXIT_STOPPED = 75  # training stopped by a signal, its checkpoint saved: rerun to continue


def register(sub: Subcommands) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (resumes from --out automatically)",
        epilog="Every key, its section, meaning and allowed values: shortcut config [--preset P] [--objective O] "
        "[key=value ...]. Keys are set as KEY=VALUE or SECTION.KEY=VALUE (e.g. optim.lr=3e-4); objective knobs "
        "(time_sampler, loss_weight, target_network, bootstrap_every...) the same way; the network's own settings "
        "as model_args.KEY=VALUE, e.g. model_args.step_input=level|size (the step size fed as -log2 d or as d; "
        "default: the objective's choice in a new run, the checkpoint's in a resumed one).",
    )
    p.add_argument("--preset", help=f"named preset: {', '.join(PRESETS)} (default: digits)")
    p.add_argument("--objective", choices=list(OBJECTIVES), help="training objective (default: the preset's)")
    p.add_argument("--config", help="JSON or TOML file of config values")
    p.add_argument("--out", help="run directory (default runs/PRESET-OBJECTIVE)")
    p.add_argument(
        "--init-from",
        metavar="CKPT",
        help="start a fresh run from this checkpoint's weights (checkpoint or run directory; same data "
        "and network; step 0, fresh optimizer); a resumed run keeps its own weights (pass the same value)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. steps=500 optim.lr=3e-4")
    p.set_defaults(func=run)


def _checked_out(path: str) -> Path:
    """--out as a run directory that can be written (its default depends on the preset, so it is
    checked here rather than by argparse)."""
    try:
        return check_output("--out", path, True)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args.preset, args.objective, args.config, args.overrides)
    check_config(cfg)  # the checks `shortcut config` makes: one set for both
    if args.init_from is not None:
        cfg.init_from = args.init_from
    out = _checked_out(f"runs/{cfg.preset}-{cfg.objective}" if args.out is None else args.out)
    world = distributed.env_world_size()
    distributed.split_batch(
        cfg.batch_size, world, cfg.grad_accum, cfg.batch_per_gpu
    )  # bad input before any launch work
    with distributed.session(cfg.device):
        trainer = build_trainer(cfg, out, progress=not args.quiet)
        if trainer.is_main:
            where = f", {world} processes, {trainer.plan.rows_per_rank} rows each" if world > 1 else ""
            print(
                f"training {cfg.objective} on {cfg.data} ({cfg.model}, {cfg.steps} steps, batch {cfg.batch_size}{where}) -> {out}",
                file=sys.stderr,
            )
        try:
            final = trainer.run()
        except torch.cuda.OutOfMemoryError:
            rows = trainer.plan.rows_per_rank // trainer.plan.grad_accum
            raise UserError(
                f"out of GPU memory with micro-batches of {rows} rows per process; set batch_per_gpu to fewer "
                f"rows (or raise grad_accum)"
            ) from None
    if trainer.is_main:
        print(f"checkpoint: {final}")
        if trainer.samples_dir is not None:
            print(f"samples:    {trainer.samples_dir}")
    return EXIT_STOPPED if trainer.stopped_by_signal else 0
