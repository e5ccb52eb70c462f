"""The ``shortcut`` command: train, sample and eval.

Exit codes: 0 success; 2 bad input (one line on stderr, no traceback; a second ``train`` on a run
directory in use, a checkpoint that could run code or none intact included); 1 work that could not
complete (training diverged, a write failed, e.g. a full disk, samples came out NaN; one line) or an
internal error; 75 (EX_TEMPFAIL) training stopped by SIGTERM/SIGINT after saving its checkpoint: run the
same command again to continue (schedulers may requeue on it); 130 interrupted outside training.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .autoencoders import build_autoencoder
from .config import EVAL_METRICS, build_config
from .data.digits import load_digits
from .data.latents import encode_folder
from .errors import RunError, UserError
from .evaluation import (
    build_metric,
    digits_metric,
    evaluate_images,
    evaluate_toy,
    feature_stats,
    fid_extractor,
    folder_feature_stats,
    format_table,
    write_results,
)
from .experiments import DemoPlan, build_trainer, run_demo
from .images import save_grid, to_uint8
from .inference import check_finite, generate_shared, load_model
from .objectives import OBJECTIVES
from .plotting import scatter_2d
from .runtime import tune_allocator
from .sampling import check_steps

EXIT_STOPPED = 75  # training stopped by a signal, its checkpoint saved: rerun to continue


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def _steps_list(text: str) -> list[int]:
    try:
        return [check_steps(int(s)) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) if "steps" in str(exc) else f"bad step list {text!r}") from None


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    cfg = build_config(args.preset, args.objective, args.config, args.overrides)
    if args.init_from is not None:
        cfg.init_from = args.init_from
    world = distributed.env_world_size()
    distributed.split_batch(
        cfg.batch_size, world, cfg.grad_accum, cfg.batch_per_gpu
    )  # bad input before any launch work
    out = Path(args.out or f"runs/{cfg.preset}-{cfg.objective}")
    with distributed.session(cfg.device):
        trainer = build_trainer(cfg, out, progress=not args.quiet)
        if trainer.is_main:
            where = f", {world} processes, {trainer.rows_per_rank} rows each" if world > 1 else ""
            print(
                f"training {cfg.objective} on {cfg.data} ({cfg.model}, {cfg.steps} steps, batch {cfg.batch_size}{where}) -> {out}",
                file=sys.stderr,
            )
        final = trainer.run()
    if trainer.is_main:
        print(f"checkpoint: {final}")
        if trainer.samples_dir is not None:
            print(f"samples:    {trainer.samples_dir}")
    return EXIT_STOPPED if trainer.stopped_by_signal else 0


def cmd_sample(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in (".npz", ".png"):
        raise UserError(f"--out must end in .npz or .png, got {out.name!r}")
    with distributed.session(args.device):  # under torchrun: each process its share, rank 0 writes
        loaded = load_model(args.ckpt, args.device)
        labels = None
        if args.class_label is not None:
            nc = loaded.num_classes
            if not 0 <= args.class_label < nc:
                raise UserError(
                    f"--class must lie in 0..{nc - 1} for this checkpoint"
                    if nc
                    else "--class given but the model is unconditional"
                )
            labels = torch.full((args.num,), args.class_label, dtype=torch.long)
        elif loaded.num_classes > 0:  # class-conditional model: cycle through the classes
            labels = torch.arange(args.num) % loaded.num_classes
        x = generate_shared(loaded, args.num, args.steps, seed=args.seed, labels=labels, cfg_scale=args.cfg_scale)
    if x is None:  # not rank 0
        return 0
    check_finite(x, f"samples of {loaded.path}")
    out.parent.mkdir(parents=True, exist_ok=True)
    y = labels.numpy() if labels is not None else np.full(args.num, loaded.num_classes, dtype=np.int64)
    is_image = x.ndim == 4  # decoded images (pixels or VAE decodes); [N, D] for vector data
    if out.suffix == ".npz":
        arr = to_uint8(x.clamp(-1, 1)) if is_image else x.numpy().astype(np.float32)
        np.savez(out, arr_0=arr, labels=y)
    elif out.suffix == ".png":
        if is_image:
            save_grid(x.clamp(-1, 1), out, rows=max(1, int(round(args.num**0.5))))
        else:
            scatter_2d(x.numpy(), out, title=f"{loaded.label}, {args.steps} step(s)")
    else:
        raise UserError(f"--out must end in .npz or .png, got {out.name!r}")
    print(f"wrote {args.num} samples to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    rows: list[dict] = []
    metric_name = None
    done: list[str] = []
    with distributed.session(args.device):  # under torchrun: samples split over processes, rank 0 writes
        for path in args.ckpt:
            try:
                metric_name = _eval_one(args, path, rows, metric_name)
            except (UserError, RunError) as exc:
                if not done:
                    raise
                if distributed.is_main():
                    _write_eval(rows, Path(args.out), metric_name)
                finished = ", ".join(done)
                raise type(exc)(f"{path}: {exc} (the results of {finished} are written to {args.out})") from None
            done.append(path)
        if not distributed.is_main():
            return 0
    _write_eval(rows, Path(args.out), metric_name)
    return 0


def _eval_one(args: argparse.Namespace, path: str, rows: list[dict], metric_name: str | None) -> str:
    """Evaluate the checkpoint ``path`` into ``rows``; returns the metric's name."""
    loaded = load_model(path, args.device)
    with distributed.main_first():  # rank 0 fills caches and downloads first
        metric = build_metric(
            args.metric,
            loaded.spec.data,
            loaded.is_image,
            args.ref_stats,
            args.inception_weights,
            loaded.device,
        )
    name = "swd" if metric is None else metric.name
    if metric_name not in (None, name):
        raise UserError(f"checkpoints need different metrics ({metric_name} and {name}); evaluate them separately")
    if metric is None:
        if args.cfg_scale != 1.0:
            raise UserError("--cfg-scale applies to class-conditional image models")
        rows += evaluate_toy(loaded, args.steps, args.num, seed=args.seed, progress=not args.quiet)
    else:
        save_dir = Path(args.out) / "samples" if args.save_samples else None
        rows += evaluate_images(
            loaded,
            args.steps,
            args.num,
            metric,
            seed=args.seed,
            cfg_scale=args.cfg_scale,
            batch_size=args.batch_size,
            save_dir=save_dir,
            progress=not args.quiet,
        )
    return name


def _write_eval(rows: list[dict], out: Path, metric_name: str) -> None:
    write_results(rows, out, metric_name)
    print(format_table(rows, metric_name))
    print(f"wrote {out / 'metrics.json'}, {out / 'metrics.csv'}, {out / 'metric_vs_steps.png'}")


def cmd_ref_stats(args: argparse.Namespace) -> int:
    if args.data == "digits":
        if args.metric == "fd-digits":
            extractor = digits_metric(args.device).extractor
        else:
            extractor = fid_extractor(args.inception_weights, args.device)
        images = load_digits(args.split)[0][: args.num]
        stats = feature_stats(extractor, images.to(args.device))
    else:
        if args.metric != "fid":
            raise UserError("--metric fd-digits needs --data digits; image folders use --metric fid")
        stats = folder_feature_stats(
            args.data, args.resolution, args.inception_weights, args.device, args.num, progress=not args.quiet
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats.to_npz(out)
    print(f"wrote {out} ({stats.count} images, {stats.mean().shape[0]}-d features)")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    autoencoder = build_autoencoder(args.vae, device=distributed.resolve_device(args.device))
    manifest = encode_folder(
        args.data,
        args.out,
        autoencoder,
        resolution=args.resolution,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        progress=not args.quiet,
        workers=args.workers,
    )
    print(
        f"encoded {manifest['num_images']} images ({manifest['num_entries']} entries with mirrors, "
        f"{manifest['num_skipped']} unreadable skipped) -> {args.out}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    fractions = (0.1, 0.25, 0.5) if args.finetune else ()
    plan = DemoPlan(
        overrides=list(args.overrides), conditional_ckpt=args.conditional_ckpt, finetune_fractions=fractions
    )
    if args.quick:  # a smoke-test budget: seconds, not minutes (numbers are meaningless)
        plan = DemoPlan(
            overrides=[
                "model=DiT-Nano",
                "steps=4",
                "log_every=2",
                "batch_size=16",
                "sample_steps=[1]",
                *args.overrides,
            ],
            track_every=2,
            track_num=20,
            eval_num=20,
            eval_steps=(1, 2, 4, 128),
            timing_repeats=2,
            conditional_ckpt=args.conditional_ckpt,
            finetune_fractions=fractions,
        )
    report = run_demo(Path(args.out), plan, progress=not args.quiet)
    print(f"report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shortcut", description="Train, sample and evaluate shortcut models and flow matching.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a model (resumes from --out automatically)")
    p.add_argument("--preset", help="named preset (default: digits)")
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
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. steps=500 lr=3e-4")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="draw samples from a checkpoint")
    p.add_argument("--ckpt", required=True, help="checkpoint directory or run directory (latest checkpoint)")
    p.add_argument("--steps", required=True, type=int, help="sampling steps, 1..128")
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--class", dest="class_label", type=int, help="class label for conditional models")
    p.add_argument("--cfg-scale", type=_finite_float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="FILE.npz (arr_0, labels) or FILE.png")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("eval", help="metrics at several step counts for one or more checkpoints")
    p.add_argument("--ckpt", required=True, action="append", help="checkpoint or run directory (repeatable)")
    p.add_argument("--steps", type=_steps_list, default=[1, 2, 4, 8, 16, 32, 64, 128])
    p.add_argument("--num", type=int, default=5000, help="samples per step count")
    p.add_argument(
        "--metric",
        choices=list(EVAL_METRICS),
        default="auto",
        help="auto: swd for 2-D data, fd-digits for digits, fid for other images",
    )
    p.add_argument("--cfg-scale", type=_finite_float, default=1.0, help="guidance weight for conditional models")
    p.add_argument("--ref-stats", help="reference statistics (.npz with mu, sigma) for --metric fid")
    p.add_argument("--inception-weights", help="local Inception weights file for --metric fid")
    p.add_argument("--save-samples", action="store_true", help="keep OUT/samples/*.npz (uint8 NHWC arr_0, labels)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("encode", help="encode an image folder into a latent cache (resumable)")
    p.add_argument("--data", required=True, help="image folder: one subfolder per class, or flat (unconditional)")
    p.add_argument(
        "--vae", default="stabilityai/sd-vae-ft-mse", help="hub name, local save_pretrained directory, or 'identity'"
    )
    p.add_argument("--resolution", type=int, default=256, help="center crop and resize (ADM recipe)")
    p.add_argument("--out", required=True, help="cache directory")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard-size", type=int, default=1024, help="images per shard")
    p.add_argument("--workers", type=int, help="image decoding threads")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("demo", help="flow matching vs shortcut on unconditional digits, with a report")
    p.add_argument("--out", default="runs/demo", help="output directory (resumable)")
    p.add_argument("--conditional-ckpt", help="a class-conditional digits checkpoint to add to the report")
    p.add_argument("--quick", action="store_true", help="tiny budget for smoke tests")
    p.add_argument(
        "--finetune",
        action="store_true",
        help="add flow matching fine-tuned into shortcut at 10%%, 25%%, 50%% of the budget (~10 more minutes)",
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for both models")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ref-stats", help="reference feature statistics (mu, sigma) of a data set")
    p.add_argument("--data", required=True, help="'digits' or an image folder")
    p.add_argument("--split", default="train", choices=["train", "test", "all"], help="digits split")
    p.add_argument(
        "--metric",
        choices=["fd-digits", "fid"],
        default=None,
        help="feature space (default: fd-digits for digits, fid for folders)",
    )
    p.add_argument("--resolution", type=int, default=256, help="folder images: center crop and resize")
    p.add_argument("--num", type=int, default=None, help="use only the first N images (default: all)")
    p.add_argument("--inception-weights", help="local Inception weights file for fid")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=cmd_ref_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    tune_allocator()
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "num", 1) is not None and getattr(args, "num", 1) < 1:
            raise UserError("--num must be a positive integer")
        if args.command == "ref-stats" and args.metric is None:
            args.metric = "fd-digits" if args.data == "digits" else "fid"
        if args.command == "sample":
            try:
                check_steps(args.steps)
            except ValueError as exc:
                raise UserError(str(exc)) from None
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


if __name__ == "__main__":
    sys.exit(main())
