"""``shortcut convert``: turn a checkpoint of the authors' JAX code into a run directory."""

from __future__ import annotations

import argparse

from ..convert import convert_jax_checkpoint
from .arguments import OUT_DIR, Subcommands, ints, reporter


def register(sub: Subcommands) -> None:
    p = sub.add_parser("convert", help="turn a checkpoint of the authors' JAX code into a run directory")
    p.add_argument(
        "--from-jax", required=True, metavar="CKPT", help="their pickled checkpoint (file, or its directory)"
    )
    p.add_argument("--preset", help="DiT preset giving the head count, e.g. DiT-B/2 (checked against the shapes)")
    p.add_argument("--num-heads", type=ints(1), help="attention heads, for sizes without a preset")
    p.add_argument("--data-shape", default="4x32x32", help="one latent, CxHxW (default 4x32x32: 256x256 images)")
    p.add_argument(
        "--vae", help="VAE that decodes the latents: hub name or local path (default stabilityai/sd-vae-ft-mse); none"
    )
    p.add_argument(
        "--train-preset", help="training preset a fine-tuning run uses (default celebahq256 / imagenet256[-xl])"
    )
    p.add_argument("--data", help="training data of that fine-tuning run (default: the training preset's)")
    p.add_argument("--out", type=OUT_DIR, required=True, help="new run directory")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    converted = convert_jax_checkpoint(
        args.from_jax,
        args.out,
        preset=args.preset,
        num_heads=args.num_heads,
        data_shape=args.data_shape,
        vae=args.vae,
        train_preset=args.train_preset,
        data=args.data,
        report=reporter(args.quiet),
    )
    print(
        f"converted {converted.model} ({converted.num_parameters / 1e6:.1f}M parameters, "
        f"{converted.num_heads} heads, step {converted.step}) -> {converted.checkpoint}"
    )
    print(f"sample:    shortcut sample --ckpt {converted.run_dir} --steps 1 --out samples.png")
    print(f"fine-tune: {converted.fine_tune_command()}")
    return 0
