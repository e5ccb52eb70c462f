"""Per-step overhead of the sampler: N-step generation time over N forwards of the network, same batch.

For each N the sampler (`shortcut_models.sampling.sample`) and a bare loop of N network calls on the
same batch are timed alternately; the median per-round ratio is printed. A ratio near 1 means the
sampler adds nothing per step (no host syncs, no re-allocation, no Python work per sample); the goal
is <= 1.05 for N = 1 and N = 128. With guidance both run the doubled batch.

    python benchmarks/sampling_overhead.py                                   # CPU default: DiT-Digits, batch 256
    python benchmarks/sampling_overhead.py --model DiT-B/2 --shape 4x32x32 --batch 256   # GPU (bf16 autocast)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics

import torch
from _common import describe, interleaved, median_ratio, setup

from shortcut_models.models import build_model
from shortcut_models.sampling import sample


def randomise_head(model: torch.nn.Module) -> None:
    """Non-zero output layer (a fresh DiT outputs exactly 0; timing does not depend on it, samples do)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0.0, 0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="DiT-Digits")
    parser.add_argument("--shape", default="1x8x8", help="sample shape CxHxW")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", default="1,128")
    parser.add_argument("--cfg-scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (both sides)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    device = setup(args.threads)
    shape = tuple(int(v) for v in args.shape.split("x"))
    model = build_model(args.model, shape, args.classes, {}).to(device).eval()
    randomise_head(model)
    net = torch.compile(model) if args.compile else model
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    b = args.batch
    guided = args.cfg_scale != 1.0
    noise = torch.randn(b, *shape, device=device)
    y = torch.arange(b, device=device) % max(args.classes, 1) if args.classes else None
    rows = 2 * b if guided else b
    x_in = torch.randn(rows, *shape, device=device)
    t_in, d_in = torch.full((rows,), 0.5, device=device), torch.full((rows,), 1 / 128, device=device)
    y_in = torch.full((rows,), args.classes, device=device, dtype=torch.long)

    print(describe(device))
    print(
        f"model {args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params), sample {args.shape}, "
        f"batch {b}{', guided (2x batch per call)' if guided else ''}{', compiled' if args.compile else ''}, "
        f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}, {args.repeats} rounds"
    )
    print(f"{'steps':>6} {'forward ms':>11} {'N forwards ms':>14} {'sampler ms':>11} {'ratio':>7}")
    for n in (int(v) for v in args.steps.split(",")):

        def forwards(n=n):
            with torch.inference_mode(), amp:
                for _ in range(n):
                    net(x_in, t_in, d_in, y_in)

        def sampler(n=n):
            with amp:
                sample(net, noise, n, y, args.cfg_scale)

        times = interleaved({"forwards": forwards, "sampler": sampler}, args.repeats, device)
        fwd = statistics.median(times["forwards"])
        smp = statistics.median(times["sampler"])
        print(
            f"{n:>6} {1e3 * fwd / n:>11.3f} {1e3 * fwd:>14.2f} {1e3 * smp:>11.2f} "
            f"{median_ratio(times['sampler'], times['forwards']):>7.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
