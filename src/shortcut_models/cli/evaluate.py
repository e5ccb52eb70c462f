"""``shortcut eval``: metrics at several step counts for one or more checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import distributed
from ..capacity import check_room, values
from ..config import EVAL_METRICS
from ..errors import RunError, UserError
from ..evaluation import SET_METRICS, build_metric, evaluate_images, evaluate_toy, format_table, write_results
from ..inference import LoadedModel, load_model
from ..sampling import SAMPLERS
from .arguments import (
    DEVICE,
    FINITE,
    OUT_DIR,
    SEED,
    Subcommands,
    add_cfg_interval,
    comma_list,
    ints,
    step_list,
    use_cfg_interval,
)
from .writer_lock import one_writer


def _metric_name(text: str) -> str:
    known = (*EVAL_METRICS, *SET_METRICS)
    if text not in known:
        raise argparse.ArgumentTypeError(f"unknown metric {text!r}; choose from {', '.join(known)}")
    return text


def _metric_list(text: str) -> list[str]:
    """An argparse type: metric names separated by commas, e.g. ``fid,is,prc``."""
    return comma_list(text, _metric_name, "metric", "fid,is,prc")


def register(sub: Subcommands) -> None:
    p = sub.add_parser("eval", help="metrics at several step counts for one or more checkpoints")
    p.add_argument("--ckpt", required=True, action="append", help="checkpoint or run directory (repeatable)")
    p.add_argument("--steps", type=step_list, default=[1, 2, 4, 8, 16, 32, 64, 128])
    p.add_argument("--num", type=ints(2), default=5000, help="samples per step count (at least 2)")
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
        "fid only), Kernel Inception Distance (kid), precision and recall (prc), in the distance's features; on "
        "digits also nn1, the 1-nearest-neighbour two-sample test in pixels (no network), e.g. fd-digits,prc,nn1",
    )
    p.add_argument("--cfg-scale", type=FINITE, default=1.0, help="guidance weight for conditional models")
    add_cfg_interval(p)
    p.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="euler",
        help="euler (default): steps along the network's velocity; renoise: each step jumps to the data end and "
        "the next starts from fresh noise mixed with that estimate, at times i/N (the multi-step sampler of the "
        "SoFlow and alpha-Flow authors; `shortcut sample --renoise-at` sets other times)",
    )
    p.add_argument(
        "--ref-stats", help="reference statistics (.npz with mu, sigma) for --metric fid or fd-dinov2 (`ref-stats`)"
    )
    p.add_argument("--inception-weights", help="local Inception weights file for --metric fid")
    p.add_argument(
        "--dinov2-weights",
        metavar="FILE",
        help="the official DINOv2 weights file (dinov2_vitl14_pretrain.pth) for --metric fd-dinov2; never downloaded",
    )
    p.add_argument(
        "--save-samples",
        action="store_true",
        help="keep OUT/samples/*.npz (uint8 NHWC arr_0, labels; image models only)",
    )
    p.add_argument("--batch-size", type=ints(1), default=500)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--device", type=DEVICE, default="auto")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", type=OUT_DIR, required=True, help="output directory")
    p.set_defaults(func=run)


def _split_metrics(args: argparse.Namespace) -> tuple[str, tuple[str, ...]]:
    """(--metric, set measures) from --metric and --metrics (e.g. fid,is,prc)."""
    if args.metrics is None:
        return args.metric, ()
    distances = [m for m in args.metrics if m in EVAL_METRICS]
    if len(distances) > 1 or (distances and args.metric != "auto" and distances[0] != args.metric):
        raise UserError(f"--metrics names more than one distance ({', '.join(distances)}); give one")
    return (distances[0] if distances else args.metric), tuple(m for m in args.metrics if m in SET_METRICS)


def run(args: argparse.Namespace) -> int:
    with one_writer(args.out, "eval"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
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
    if args.save_samples and not loaded.is_image:
        raise UserError(
            f"--save-samples keeps image samples; {path} draws 2-D points: write them with "
            f"`shortcut sample --ckpt {path} --out FILE.npz` (float32 [N, 2])"
        )
    use_cfg_interval(loaded, args.cfg_interval)
    loaded.sampler = args.sampler
    _check_room(args, loaded)
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


def _check_room(args: argparse.Namespace, loaded: LoadedModel) -> None:
    """Refuse a --num whose samples cannot be held (2-D data: the samples and twice as many reference
    points; images: the labels, and the samples kept by --save-samples) or saved on the disk."""
    per_sample = values(loaded.data_shape)
    if not loaded.is_image:
        memory = 3 * args.num * per_sample * 4
    else:
        memory = args.num * (8 if loaded.num_classes else 0) + (args.num * per_sample * 4 if args.save_samples else 0)
    disk = args.num * per_sample * len(args.steps) if args.save_samples and loaded.is_image else 0
    check_room(f"--num {args.num}", memory=memory, disk=disk, where=args.out)


def _write_eval(rows: list[dict], out: Path, metric_name: str) -> None:
    write_results(rows, out, metric_name)
    print(format_table(rows, metric_name))
    print(f"wrote {out / 'metrics.json'}, {out / 'metrics.csv'}, {out / 'metric_vs_steps.png'}")
