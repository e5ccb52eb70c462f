"""The ``shortcut`` command: train, sample and eval.

Exit codes: 0 success; 2 bad input (one line on stderr, no traceback; a second ``train`` on a run
directory in use, a checkpoint that could run code or none intact included); 1 work that could not
complete (training diverged, a write failed, e.g. a full disk, samples came out NaN; one line) or an
internal error; 75 (EX_TEMPFAIL) training stopped by SIGTERM/SIGINT after saving its checkpoint: run the
same command again to continue (schedulers may requeue on it); 130 interrupted outside training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .autoencoders import build_autoencoder
from .config import EVAL_METRICS, build_config
from .convert import convert_jax_checkpoint
from .data.digits import load_digits
from .data.folder import MAX_RESOLUTION, check_folder
from .data.latents import encode_folder
from .errors import RunError, UserError
from .evaluation import (
    SET_METRICS,
    build_metric,
    convert_reference_stats,
    digits_metric,
    evaluate_images,
    evaluate_toy,
    feature_extractor,
    feature_stats,
    folder_feature_stats,
    format_table,
    write_results,
)
from .experiments import DemoPlan, StudyPlan, build_trainer, run_demo, run_study
from .images import save_grid, to_uint8
from .inference import check_finite, generate_shared, load_model
from .objectives import OBJECTIVES
from .plotting import scatter_2d
from .runtime import tune_allocator
from .sampling import check_steps
from .seeding import MAX_SEED
from .validation import check_device, check_float, check_int, check_output

EXIT_STOPPED = 75  # training stopped by a signal, its checkpoint saved: rerun to continue


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def _steps_list(text: str) -> list[int]:
    try:
        steps = [check_steps(int(s)) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) if "steps" in str(exc) else f"bad step list {text!r}") from None
    if not steps:
        raise argparse.ArgumentTypeError(f"needs at least one step count, e.g. 1,2,4; got {text!r}")
    return steps


def _arg(convert, check, *bounds):
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


def _ints(low: int, high: int | None = None):
    return _arg(int, check_int, low, high)


_FINITE = _arg(float, check_float)
_DEVICE = _arg(str, check_device)
_SEED = _ints(0, MAX_SEED)
_OUT_DIR = _arg(str, check_output, True)
_OUT_FILE = _arg(str, check_output, False)


def _checked_out(path: str, directory: bool) -> Path:
    try:
        return check_output("--out", path, directory)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def cmd_train(args: argparse.Namespace) -> int:
    cfg = build_config(args.preset, args.objective, args.config, args.overrides)
    if args.init_from is not None:
        cfg.init_from = args.init_from
    out = _checked_out(f"runs/{cfg.preset}-{cfg.objective}" if args.out is None else args.out, directory=True)
    world = distributed.env_world_size()
    distributed.split_batch(
        cfg.batch_size, world, cfg.grad_accum, cfg.batch_per_gpu
    )  # bad input before any launch work
    with distributed.session(cfg.device):
        trainer = build_trainer(cfg, out, progress=not args.quiet)
        if trainer.is_main:
            where = f", {world} processes, {trainer.rows_per_rank} rows each" if world > 1 else ""
            print(
                f"training {cfg.objective} on {cfg.data} ({cfg.model}, {cfg.steps} steps, batch {cfg.batch_size}{where}) -> {out}",
                file=sys.stderr,
            )
        try:
            final = trainer.run()
        except torch.cuda.OutOfMemoryError:
            rows = trainer.rows_per_rank // trainer.grad_accum
            raise UserError(
                f"out of GPU memory with micro-batches of {rows} rows per process; set batch_per_gpu to fewer "
                f"rows (or raise grad_accum)"
            ) from None
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


def _metric_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = (*EVAL_METRICS, *SET_METRICS)
    bad = [name for name in names if name not in known]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown metric {bad[0] if bad else text!r}; choose from {', '.join(known)}")
    return names


def _split_metrics(args: argparse.Namespace) -> tuple[str, tuple[str, ...]]:
    """(--metric, set measures) from --metric and --metrics (e.g. fid,is,prc)."""
    if args.metrics is None:
        return args.metric, ()
    distances = [m for m in args.metrics if m in EVAL_METRICS]
    if len(distances) > 1 or (distances and args.metric != "auto" and distances[0] != args.metric):
        raise UserError(f"--metrics names more than one distance ({', '.join(distances)}); give one")
    return (distances[0] if distances else args.metric), tuple(m for m in args.metrics if m in SET_METRICS)


def cmd_eval(args: argparse.Namespace) -> int:
    rows: list[dict] = []
    metric_name = None
    done: list[str] = []
    primary, extras = _split_metrics(args)
    with distributed.session(args.device):  # under torchrun: samples split over processes, rank 0 writes
        for path in args.ckpt:
            try:
                metric_name = _eval_one(args, path, rows, metric_name, primary, extras)
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


def _eval_one(
    args: argparse.Namespace,
    path: str,
    rows: list[dict],
    metric_name: str | None,
    primary: str,
    extras: tuple[str, ...],
) -> str:
    """Evaluate the checkpoint ``path`` into ``rows`` with metric ``primary`` and the set measures
    ``extras``; returns the metric's name."""
    loaded = load_model(path, args.device)
    with distributed.main_first():  # rank 0 fills caches and downloads first
        metric = build_metric(
            primary,
            loaded.spec.data,
            loaded.is_image,
            args.ref_stats,
            args.inception_weights,
            loaded.device,
            extras,
            dinov2_weights=args.dinov2_weights,
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
    if (args.data is None) == (args.convert is None):
        raise UserError("give --data (compute statistics) or --convert FILE.npz (take another tool's), not both")
    weights = args.dinov2_weights if args.metric == "fd-dinov2" else args.inception_weights
    if args.convert is not None:
        if args.metric == "fd-dinov2":
            raise UserError("--convert reads Inception statistics (fid); --metric fd-dinov2 applies to --data")
        converted = convert_reference_stats(
            args.convert,
            args.out,
            recompute=args.recompute,
            inception_weights=args.inception_weights,
            device=args.device,
            progress=not args.quiet,
            keep=args.keep_features,
        )
        print(converted.describe())
        return 0
    if args.recompute:
        raise UserError("--recompute applies to --convert")
    if args.data == "digits":
        if args.metric == "fd-digits":
            extractor = digits_metric(args.device).extractor
        else:
            extractor = feature_extractor(args.metric, weights, args.device)
        images = load_digits(args.split)[0][: args.num]
        stats = feature_stats(extractor, images.to(args.device), keep=args.keep_features)
    else:
        if args.metric == "fd-digits":
            raise UserError("--metric fd-digits needs --data digits; image folders use --metric fid or fd-dinov2")
        stats = folder_feature_stats(
            args.data,
            args.resolution,
            weights,
            args.device,
            args.num,
            progress=not args.quiet,
            keep=args.keep_features,
            metric=args.metric,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats.to_npz(out, extractor=args.metric)
    print(f"wrote {out} ({stats.count} images, {stats.mean().shape[0]}-d features)")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    check_folder(args.data)  # before loading (or downloading) the VAE
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


def cmd_convert(args: argparse.Namespace) -> int:
    report = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    run = convert_jax_checkpoint(
        args.from_jax,
        args.out,
        preset=args.preset,
        num_heads=args.num_heads,
        data_shape=args.data_shape,
        vae=args.vae,
        train_preset=args.train_preset,
        data=args.data,
        report=report,
    )
    print(
        f"converted {run.model} ({run.num_parameters / 1e6:.1f}M parameters, {run.num_heads} heads, "
        f"step {run.step}) -> {run.checkpoint}"
    )
    print(f"sample:    shortcut sample --ckpt {run.run_dir} --steps 1 --out samples.png")
    print(f"fine-tune: {run.fine_tune_command()}")
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


def _positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def cmd_study(args: argparse.Namespace) -> int:
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
    p.add_argument("--num", type=_ints(1), default=1000)
    p.add_argument("--class", dest="class_label", type=int, help="class label for conditional models")
    p.add_argument("--cfg-scale", type=_FINITE, default=1.0)
    p.add_argument("--seed", type=_SEED, default=0)
    p.add_argument("--device", type=_DEVICE, default="auto")
    p.add_argument("--out", type=_OUT_FILE, required=True, help="FILE.npz (arr_0, labels) or FILE.png")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("eval", help="metrics at several step counts for one or more checkpoints")
    p.add_argument("--ckpt", required=True, action="append", help="checkpoint or run directory (repeatable)")
    p.add_argument("--steps", type=_steps_list, default=[1, 2, 4, 8, 16, 32, 64, 128])
    p.add_argument("--num", type=_ints(2), default=5000, help="samples per step count (at least 2)")
    p.add_argument(
        "--metric",
        choices=list(EVAL_METRICS),
        default="auto",
        help="auto: swd for 2-D data, fd-digits for digits, fid for other images; fd-dinov2: Fréchet distance "
        "in DINOv2 features (needs --dinov2-weights)",
    )
    p.add_argument(
        "--metrics",
        type=_metric_list,
        help="several at once, e.g. fid,is,kid,prc: one distance (as --metric) plus the Inception Score (is, "
        "fid only), Kernel Inception Distance (kid), precision and recall (prc), in the distance's features",
    )
    p.add_argument("--cfg-scale", type=_FINITE, default=1.0, help="guidance weight for conditional models")
    p.add_argument(
        "--ref-stats", help="reference statistics (.npz with mu, sigma) for --metric fid or fd-dinov2 (`ref-stats`)"
    )
    p.add_argument("--inception-weights", help="local Inception weights file for --metric fid")
    p.add_argument(
        "--dinov2-weights",
        metavar="FILE",
        help="the official DINOv2 weights file (dinov2_vitl14_pretrain.pth) for --metric fd-dinov2; never downloaded",
    )
    p.add_argument("--save-samples", action="store_true", help="keep OUT/samples/*.npz (uint8 NHWC arr_0, labels)")
    p.add_argument("--batch-size", type=_ints(1), default=500)
    p.add_argument("--seed", type=_SEED, default=0)
    p.add_argument("--device", type=_DEVICE, default="auto")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", type=_OUT_DIR, required=True, help="output directory")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("encode", help="encode an image folder into a latent cache (resumable)")
    p.add_argument("--data", required=True, help="image folder: one subfolder per class, or flat (unconditional)")
    p.add_argument(
        "--vae", default="stabilityai/sd-vae-ft-mse", help="hub name, local save_pretrained directory, or 'identity'"
    )
    p.add_argument(
        "--resolution", type=_ints(1, MAX_RESOLUTION), default=256, help="center crop and resize (ADM recipe)"
    )
    p.add_argument("--out", type=_OUT_DIR, required=True, help="cache directory")
    p.add_argument("--batch-size", type=_ints(1), default=32)
    p.add_argument("--shard-size", type=_ints(1), default=1024, help="images per shard")
    p.add_argument("--workers", type=_ints(1), help="image decoding threads")
    p.add_argument("--device", type=_DEVICE, default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("convert", help="turn a checkpoint of the authors' JAX code into a run directory")
    p.add_argument(
        "--from-jax", required=True, metavar="CKPT", help="their pickled checkpoint (file, or its directory)"
    )
    p.add_argument("--preset", help="DiT preset giving the head count, e.g. DiT-B/2 (checked against the shapes)")
    p.add_argument("--num-heads", type=_ints(1), help="attention heads, for sizes without a preset")
    p.add_argument("--data-shape", default="4x32x32", help="one latent, CxHxW (default 4x32x32: 256x256 images)")
    p.add_argument(
        "--vae", help="VAE that decodes the latents: hub name or local path (default stabilityai/sd-vae-ft-mse); none"
    )
    p.add_argument(
        "--train-preset", help="training preset a fine-tuning run uses (default celebahq256 / imagenet256[-xl])"
    )
    p.add_argument("--data", help="training data of that fine-tuning run (default: the training preset's)")
    p.add_argument("--out", type=_OUT_DIR, required=True, help="new run directory")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo", help="flow matching vs shortcut on unconditional digits, with a report")
    p.add_argument("--out", type=_OUT_DIR, default="runs/demo", help="output directory (resumable)")
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

    p = sub.add_parser(
        "study", help="flow matching, shortcut, the paper's baselines and MeanFlow on one network, ranked in a report"
    )
    p.add_argument("--out", default="runs/study", help="output directory (resumable)")
    p.add_argument("--steps", type=_positive, help="training steps of every method (default 4000)")
    p.add_argument("--eval-num", type=_positive, help="samples per method and step count (default 2000)")
    p.add_argument("--quick", action="store_true", help="tiny budget for smoke tests")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every method")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("ref-stats", help="reference feature statistics (mu, sigma) of a data set")
    p.add_argument("--data", help="'digits' or an image folder")
    p.add_argument(
        "--convert",
        metavar="FILE.npz",
        help="take another tool's statistics instead: the authors' mu/sigma or an ADM reference batch",
    )
    p.add_argument(
        "--recompute",
        action="store_true",
        help="with --convert: recompute from the file's images (arr_0) with this package's Inception",
    )
    p.add_argument("--split", default="train", choices=["train", "test", "all"], help="digits split")
    p.add_argument(
        "--metric",
        choices=["fd-digits", "fid", "fd-dinov2"],
        default=None,
        help="feature space (default: fd-digits for digits, fid for folders; fd-dinov2 needs --dinov2-weights)",
    )
    p.add_argument(
        "--resolution", type=_ints(1, MAX_RESOLUTION), default=256, help="folder images: center crop and resize"
    )
    p.add_argument("--num", type=_ints(2), default=None, help="use only the first N images (default: all)")
    p.add_argument(
        "--keep-features",
        type=_ints(0),
        default=10_000,
        metavar="N",
        help="also keep N feature vectors, for kid and prc in `shortcut eval --metrics` (0: none)",
    )
    p.add_argument("--inception-weights", help="local Inception weights file for fid")
    p.add_argument(
        "--dinov2-weights",
        metavar="FILE",
        help="the official DINOv2 weights file (dinov2_vitl14_pretrain.pth) for fd-dinov2; never downloaded",
    )
    p.add_argument("--device", type=_DEVICE, default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", type=_OUT_FILE, required=True, help="output .npz")
    p.set_defaults(func=cmd_ref_stats)
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
    try:
        args = _parse(build_parser(), argv)
        if args.command == "ref-stats" and args.metric is None and args.data is not None:
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
