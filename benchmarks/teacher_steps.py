"""Live reflow's teacher steps at the study's setting: 8 Euler steps over 8 rows against one 64-row forward.

The study's network (DiT-Digits/4 on 8x8 digits, random weights, no gradient). Three things are timed,
alternated in one process (the order flips every round), medians over rounds:

- one forward pass of 64 rows: what the cost model counts the 8 steps as;
- 8 steps of 8 rows, each step a full forward pass (conditioning included), as live reflow ran before;
- 8 steps of 8 rows with the conditioning of all 8 computed ahead (``calls_at_times``), as it runs now.

``--products`` adds the rate of each of the network's matrix products at 32 and at 256 token rows (the
token rows of a step of 8 rows, and of a 64-row forward).

    python benchmarks/teacher_steps.py --threads 1
    python benchmarks/teacher_steps.py --threads 2 --products
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _common import describe, interleaved_times, setup

from shortcut_models.models.dit import DiT
from shortcut_models.objectives.fixed_conditioning import calls_at_times

ROWS, STEPS, BATCH = 8, 8, 64  # the study's reflow rows (batch 64 // 8), Euler steps, batch


def network() -> DiT:
    torch.manual_seed(0)
    model = DiT.from_preset("DiT-Digits/4", input_size=8, in_channels=1, num_classes=0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.05)
    return model.eval()


def timed_loop(fn, inner: int) -> float:
    """Seconds per call of ``fn``, over ``inner`` calls."""
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def product_rates(repeats: int) -> None:
    """GFLOP/s of each matrix product of a DiT-Digits/4 block at 32 and 256 token rows."""
    shapes = {"qkv": (128, 384), "proj": (128, 128), "fc1": (128, 512), "fc2": (512, 128), "head": (128, 16)}
    print(f"{'product':>8} {'32 rows GFLOP/s':>16} {'256 rows GFLOP/s':>17}")
    for name, (k, n) in shapes.items():
        w, b = torch.randn(n, k), torch.randn(n)
        rates = []
        for rows in (32, 256):
            a = torch.randn(rows // 4, 4, k)
            seconds = statistics.median(
                timed_loop(lambda a=a, w=w, b=b: F.linear(a, w, b), 200) for _ in range(repeats)
            )
            rates.append(2 * rows * k * n / seconds / 1e9)
        print(f"{name:>8} {rates[0]:>16.1f} {rates[1]:>17.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--inner", type=int, default=20, help="calls per timed round")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--products", action="store_true", help="also the matrix products' rates")
    args = parser.parse_args()
    device = setup(args.threads)
    print(describe(device))
    model = network()
    g = torch.Generator().manual_seed(1)
    x64, t64 = torch.randn(BATCH, 1, 8, 8, generator=g), torch.rand(BATCH, generator=g)
    x0 = x64[:ROWS]
    d = torch.full((ROWS,), 1 / 128)
    null = torch.zeros(ROWS, dtype=torch.long)
    times = [i / STEPS for i in range(STEPS)]

    def forward_64() -> None:
        model(x64, t64, torch.full((BATCH,), 1 / 128), torch.zeros(BATCH, dtype=torch.long))

    def full_steps() -> torch.Tensor:
        x = x0
        for s in times:
            x = x + model(x, torch.full_like(d, s), d, null) / STEPS
        return x

    def steps_ahead() -> torch.Tensor:
        x = x0
        for step in calls_at_times(model, times, d, null):
            x = x + step(x) / STEPS
        return x

    cases = {"one forward of 64 rows": forward_64, "8 steps, full forwards": full_steps}
    cases["8 steps, conditioning ahead"] = steps_ahead
    with torch.no_grad():
        same = torch.equal(full_steps(), steps_ahead())
        seconds = interleaved_times(
            {k: (lambda i, f=f: timed_loop(f, args.inner)) for k, f in cases.items()}, args.repeats
        )
    for name, values in seconds.items():
        print(f"{name:>30} {1e3 * statistics.median(values):8.2f} ms")
    print(f"the two ways of taking the steps give the same numbers bit for bit: {same}")
    if args.products:
        product_rates(args.repeats)


if __name__ == "__main__":
    main()
