"""``shortcut sample``: draw samples from a checkpoint into FILE.npz or FILE.png."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from .. import distributed
from ..capacity import check_room, values
from ..errors import UserError
from ..images import save_grid, to_uint8
from ..inference import check_finite, generate_shared, load_model
from ..outputs import save_npz
from ..plotting import scatter_2d
from ..sampling import SAMPLERS, renoise_starts
from .arguments import (
    DEVICE,
    FINITE,
    OUT_FILE,
    SEED,
    Subcommands,
    add_cfg_interval,
    comma_list,
    ints,
    one_step,
    use_cfg_interval,
)


def register(sub: Subcommands) -> None:
    p = sub.add_parser("sample", help="draw samples from a checkpoint")
    p.add_argument("--ckpt", required=True, help="checkpoint directory or run directory (latest checkpoint)")
    p.add_argument("--steps", required=True, type=one_step, help="sampling steps, 1..128")
    p.add_argument("--num", type=ints(1), default=1000)
    p.add_argument("--class", dest="class_label", type=int, help="class label for conditional models")
    p.add_argument(
        "--cfg-scale",
        type=FINITE,
        default=1.0,
        help="guidance weight w (1: none); a model trained with the guidance input (iMF) takes it as input, "
        "one network pass per step",
    )
    add_cfg_interval(p)
    p.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="euler",
        help="euler (default): steps along the network's velocity; renoise: each step jumps to the data end and "
        "the next starts from fresh noise mixed with that estimate (the two-step sampler of the SoFlow and "
        "alpha-Flow authors)",
    )
    p.add_argument(
        "--renoise-at",
        type=renoise_times,
        default=None,
        metavar="T[,T...]",
        help="with --sampler renoise: the start times of steps 2..N, increasing in (0, 1) (t = 0 noise); "
        "default i/N (two steps: 0.5, SoFlow's authors' value; alpha-Flow's XL/2 two-step value is 0.45)",
    )
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--device", type=DEVICE, default="auto")
    p.add_argument("--out", type=OUT_FILE, required=True, help="FILE.npz (arr_0, labels) or FILE.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in (".npz", ".png"):
        raise UserError(f"--out must end in .npz or .png, got {out.name!r}")
    renoise_at = check_sampler(args.sampler, args.renoise_at, args.steps)
    with distributed.session(args.device):  # under torchrun: each process its share, rank 0 writes
        loaded = load_model(args.ckpt, args.device)
        use_cfg_interval(loaded, args.cfg_interval)
        loaded.sampler, loaded.renoise_at = args.sampler, renoise_at
        _check_room(args, out, values(loaded.data_shape), loaded.is_image)
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
    y = labels.numpy() if labels is not None else np.full(args.num, loaded.num_classes, dtype=np.int64)
    is_image = x.ndim == 4  # decoded images (pixels or VAE decodes); [N, D] for vector data
    if out.suffix == ".npz":
        arr = to_uint8(x.clamp(-1, 1)) if is_image else x.numpy().astype(np.float32)
        save_npz(out, arr_0=arr, labels=y)
    elif is_image:  # .png
        save_grid(x.clamp(-1, 1), out, rows=max(1, int(round(args.num**0.5))))
    else:
        sampler = ", re-noising" if args.sampler == "renoise" else ""
        scatter_2d(x.numpy(), out, title=f"{loaded.label}, {args.steps} step(s){sampler}")
    print(f"wrote {args.num} samples to {out}")
    return 0


def renoise_times(text: str) -> list[float]:
    """An argparse type: times separated by commas, e.g. ``0.5`` or ``0.25,0.5,0.75``."""

    def time(item: str) -> float:
        try:
            return float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not a time; give times in (0, 1), e.g. 0.5") from None

    return comma_list(text, time, "time", "0.5")


def check_sampler(sampler: str, at: list[float] | None, steps: int) -> tuple[float, ...]:
    """The re-noising times of ``--renoise-at`` (() for the default i/N); UserError when given without
    ``--sampler renoise`` or when they are not ``steps`` - 1 times increasing in (0, 1)."""
    if at is None:
        return ()
    if sampler != "renoise":
        raise UserError("--renoise-at needs --sampler renoise")
    try:
        renoise_starts(steps, at)
    except ValueError as exc:
        raise UserError(f"--renoise-at: {exc}") from None
    return tuple(at)


def _check_room(args: argparse.Namespace, out: Path, per_sample: int, is_image: bool) -> None:
    """Refuse a --num whose samples cannot be held in memory (float32, with their labels) or whose
    .npz (uint8 pixels or float32 vectors) cannot fit on the disk."""
    on_disk = args.num * per_sample * (1 if is_image else 4) if out.suffix == ".npz" else 0
    check_room(f"--num {args.num}", memory=args.num * (4 * per_sample + 8), disk=on_disk, where=out.parent)
