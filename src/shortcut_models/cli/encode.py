"""``shortcut encode``: encode an image folder into a latent cache (resumable)."""

from __future__ import annotations

import argparse

from .. import distributed
from ..autoencoders import build_autoencoder
from ..data.folder import MAX_RESOLUTION, check_folder
from ..data.latents import encode_folder
from .arguments import DEVICE, OUT_DIR, Subcommands, ints
from .writer_lock import one_writer


def register(sub: Subcommands) -> None:
    p = sub.add_parser("encode", help="encode an image folder into a latent cache (resumable)")
    p.add_argument("--data", required=True, help="image folder: one subfolder per class, or flat (unconditional)")
    p.add_argument(
        "--vae", default="stabilityai/sd-vae-ft-mse", help="hub name, local save_pretrained directory, or 'identity'"
    )
    p.add_argument(
        "--resolution", type=ints(1, MAX_RESOLUTION), default=256, help="center crop and resize (ADM recipe)"
    )
    p.add_argument("--out", type=OUT_DIR, required=True, help="cache directory")
    p.add_argument("--batch-size", type=ints(1), default=32)
    p.add_argument("--shard-size", type=ints(1), default=1024, help="images per shard")
    p.add_argument("--workers", type=ints(1), help="image decoding threads")
    p.add_argument("--device", type=DEVICE, default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_folder(args.data)  # before loading (or downloading) the VAE
    with one_writer(args.out, "encode"):
        return _encode(args)


def _encode(args: argparse.Namespace) -> int:
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
