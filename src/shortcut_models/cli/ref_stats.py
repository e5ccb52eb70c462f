"""``shortcut ref-stats``: reference feature statistics (mu, sigma) of a data set, computed or converted
from another tool's file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.digits import load_digits
from ..data.folder import MAX_RESOLUTION
from ..errors import UserError
from ..evaluation import (
    convert_reference_stats,
    digits_metric,
    feature_extractor,
    feature_stats,
    folder_feature_stats,
)
from .arguments import DEVICE, OUT_FILE, Subcommands, ints


def register(sub: Subcommands) -> None:
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
        "--resolution", type=ints(1, MAX_RESOLUTION), default=256, help="folder images: center crop and resize"
    )
    p.add_argument("--num", type=ints(2), default=None, help="use only the first N images (default: all)")
    p.add_argument(
        "--keep-features",
        type=ints(0),
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
    p.add_argument("--device", type=DEVICE, default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", type=OUT_FILE, required=True, help="output .npz")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if Path(args.out).suffix != ".npz":  # the file is always a .npz: a name saying otherwise misleads its reader
        raise UserError(f"--out must end in .npz (ref-stats writes a .npz file), got {Path(args.out).name!r}")
    if (args.data is None) == (args.convert is None):
        raise UserError("give --data (compute statistics) or --convert FILE.npz (take another tool's), not both")
    return _convert(args) if args.convert is not None else _compute(args)


def _convert(args: argparse.Namespace) -> int:
    """--convert: another tool's Inception statistics, optionally recomputed from its images."""
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


def _compute(args: argparse.Namespace) -> int:
    """--data: the statistics of the digits or of an image folder, in --metric's features."""
    if args.recompute:
        raise UserError("--recompute applies to --convert")
    metric = args.metric or ("fd-digits" if args.data == "digits" else "fid")
    weights = args.dinov2_weights if metric == "fd-dinov2" else args.inception_weights
    if args.data == "digits":
        if metric == "fd-digits":
            extractor = digits_metric(args.device).extractor
        else:
            extractor = feature_extractor(metric, weights, args.device)
        images = load_digits(args.split)[0][: args.num]
        stats = feature_stats(extractor, images.to(args.device), keep=args.keep_features)
    else:
        if metric == "fd-digits":
            raise UserError("--metric fd-digits needs --data digits; image folders use --metric fid or fd-dinov2")
        stats = folder_feature_stats(
            args.data,
            args.resolution,
            weights,
            args.device,
            args.num,
            progress=not args.quiet,
            keep=args.keep_features,
            metric=metric,
        )
    out = Path(args.out)
    stats.to_npz(out, extractor=metric)
    print(f"wrote {out} ({stats.count} images, {stats.mean().shape[0]}-d features)")
    return 0
