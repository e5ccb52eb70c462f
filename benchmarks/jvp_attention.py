"""Attention under the Jacobian-vector product: which kernel runs, what it costs, and its memory.

MeanFlow and the other interval methods need the network's output and its derivative along the path in
one pass (``network_jvp_with_output``). The DiT carries the tangent through its own layers
(models/primitives.py), and forms the attention probabilities explicitly there, where the plain forward
pass calls a fused kernel (``scaled_dot_product_attention``). This script measures what that choice
costs at a given network and batch:

- the time of a plain forward pass, of the DiT's own JVP pass and of ``torch.func.jvp`` (steps
  alternated, medians; bf16 autocast on a GPU), and the peak memory of each on a GPU;
- from a profile of one pass each: the attention kernels that ran (fused ones named), and the share of
  the JVP pass's time spent in the attention probabilities (softmax and the products that form and
  apply them).

    python benchmarks/jvp_attention.py                                 # DiT-B/2, 4x32x32, 64 rows
    python benchmarks/jvp_attention.py --model DiT-Nano --shape 1x8x8 --rows 8 --repeats 3   # CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import Callable

import torch
from _common import describe, interleaved_times, setup, sync, timed
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

from shortcut_models.models import build_model

# parts of the names of fused attention ops and kernels (CUDA and CPU)
FUSED = ("flash_attention", "efficient_attention", "cudnn_attention", "fmha", "flash_fwd", "pytorch_flash")
PROBABILITIES = ("softmax", "bmm", "matmul")  # the ops of attention formed explicitly


def inputs(shape: tuple[int, ...], rows: int, classes: int, device: torch.device):
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(rows, *shape, generator=g).to(device)
    t, r = torch.rand(rows, generator=g).to(device), torch.rand(rows, generator=g).to(device)
    d = (t - torch.minimum(t, r)).abs()
    y = torch.randint(0, classes + 1, (rows,), generator=g).to(device)
    v = torch.randn(rows, *shape, generator=g).to(device)
    return (x, t, d, y), (v, torch.ones_like(t), torch.zeros_like(d))


def passes(model, primals, tangents) -> dict[str, Callable[[], object]]:
    x, t, d, y = primals

    def func_jvp():
        with sdpa_kernel([SDPBackend.MATH]):
            return jvp(lambda a, b, c: model(a, b, c, y), (x, t, d), tangents)

    return {
        "forward": lambda: model(x, t, d, y),
        "own JVP (output + tangent)": lambda: model.jvp(primals, tangents),
        "torch.func.jvp": func_jvp,
    }


def peak_memory(fn: Callable[[], object], device: torch.device) -> float:
    """Peak allocated GPU memory of ``fn()`` above what was allocated before, GiB (NaN on a CPU)."""
    if device.type != "cuda":
        return float("nan")
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**30


def kernels(fn: Callable[[], object], device: torch.device) -> tuple[list[str], float]:
    """(names of the attention ops and kernels that ran, share of time in the attention probabilities)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    events = prof.key_averages()
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, attr) for e in events) or 1.0
    seen = sorted({e.key for e in events if "attention" in e.key.lower() or any(k in e.key.lower() for k in FUSED)})
    probs = sum(getattr(e, attr) for e in events if any(k in e.key.lower() for k in PROBABILITIES))
    return seen, probs / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="DiT-B/2")
    parser.add_argument("--shape", default="4x32x32", help="CxHxW of a row")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument(
        "--rows", type=int, default=64, help="rows per pass (MeanFlow at batch 256: 64 carry an interval)"
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    device = setup(args.threads)
    print(describe(device))
    shape = tuple(int(v) for v in args.shape.split("x"))
    model = build_model(args.model, shape, args.classes, {}).to(device).eval()
    with torch.no_grad():
        for p in model.parameters():  # away from the zero initialisation, so every layer matters
            p.add_(0.02 * torch.randn_like(p))
    primals, tangents = inputs(shape, args.rows, args.classes, device)
    cases = passes(model, primals, tangents)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    print(f"{args.model}, {args.rows} rows of {args.shape}{', bf16 autocast' if device.type == 'cuda' else ''}")
    with amp, torch.no_grad():
        for fn in cases.values():
            fn()  # warm-up
        seconds = interleaved_times({k: (lambda i, f=f: timed(f, device)) for k, f in cases.items()}, args.repeats)
        base = statistics.median(seconds["forward"])
        print(f"{'pass':>28} {'ms':>9} {'x forward':>10} {'peak GiB':>9}  attention ops and kernels")
        for name, fn in cases.items():
            ms = 1e3 * statistics.median(seconds[name])
            seen, share = kernels(fn, device)
            fused = [k for k in seen if any(f in k.lower() for f in FUSED)]
            math = any("attention_math" in k for k in seen)
            note = f"fused: {', '.join(fused)}" if fused else "no fused kernel" + (" (the math kernel)" if math else "")
            if name != "forward":
                note += f"; attention probabilities {100 * share:.0f}% of the time"
            print(f"{name:>28} {ms:>9.2f} {ms / 1e3 / base:>10.2f} {peak_memory(fn, device):>9.2f}  {note}")


if __name__ == "__main__":
    main()
