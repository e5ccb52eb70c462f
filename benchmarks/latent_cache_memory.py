"""Peak memory of training on a latent cache: it must not grow with the number of cached images.

Writes random latent caches (``write_random_cache``: the layout of `shortcut encode`, two entries per
image, float16 mean/std) of each size, then runs, each in a fresh Python process, the data access of
a short training run: for ``--steps`` steps ``x, y = source.batch(step, batch, seed=0)`` and a tiny
conv net forward/backward/SGD step on ``x`` (``--no-net``: the batch reads only). Each process
reports its peak resident memory (VmHWM in /proc/self/status, Linux only). The goal: the sizes differ
by less than 100 MB (LatentSource reads the rows of a batch from the shard files; the whole cache was
held in memory before, ~13 GB for the 200,000 images here).

    python benchmarks/latent_cache_memory.py                      # 20,000 and 200,000 images of 4x32x32 (~7.2 GB disk)
    python benchmarks/latent_cache_memory.py --sizes 2000,20000 --dir /data/tmp --keep
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from shortcut_models.data.latents import LatentSource, write_random_cache
from shortcut_models.runtime import tune_allocator


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def train_loop(cache: Path, steps: int, batch: int, net: bool) -> dict:
    """A run's data access on ``cache`` (in this process); peak RSS before and after, seconds per step."""
    tune_allocator()  # the allocator settings of the `shortcut` command
    before = peak_rss_mb()
    source = LatentSource(cache)
    after_open = peak_rss_mb()
    torch.manual_seed(0)
    c = source.shape[0]
    model = torch.nn.Sequential(
        torch.nn.Conv2d(c, 32, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(32, c, 3, padding=1)
    )
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    read_s = 0.0
    t0 = time.perf_counter()
    for step in range(steps):
        t = time.perf_counter()
        x, _ = source.batch(step, batch, seed=0)
        read_s += time.perf_counter() - t
        if net:
            loss = (model(x) - x).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    total_s = time.perf_counter() - t0
    source.close()
    return {
        "entries": source.num_entries,
        "rss_start_mb": before,
        "rss_open_mb": after_open,
        "rss_peak_mb": peak_rss_mb(),
        "read_ms_per_step": 1e3 * read_s / steps,
        "ms_per_step": 1e3 * total_s / steps,
    }


def disk_gb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.iterdir()) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20000,200000", help="numbers of images, comma separated")
    parser.add_argument("--shape", default="4x32x32", help="latent shape CxHxW")
    parser.add_argument("--shard-size", type=int, default=1024, help="images per shard")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--no-net", action="store_true", help="read batches only (no conv net step)")
    parser.add_argument("--dir", help="where to write the caches (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the caches")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run the loop on this cache, print JSON
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(train_loop(Path(args.worker), args.steps, args.batch, not args.no_net)))
        return
    if not sys.platform.startswith("linux"):
        sys.exit("this benchmark reads VmHWM from /proc/self/status (Linux only)")

    shape = tuple(int(v) for v in args.shape.lower().split("x"))
    sizes = [int(v) for v in args.sizes.split(",")]
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="latent_cache_memory_"))
    print("command: python " + " ".join([sys.argv[0], *sys.argv[1:]]))
    print(f"torch {torch.__version__}; python {sys.version.split()[0]}; caches in {root}")
    rows = []
    try:
        for n in sizes:
            cache = root / f"cache_{n}"
            t = time.perf_counter()
            write_random_cache(cache, n, latent_shape=shape, shard_size=args.shard_size)
            print(f"wrote {n:,} images ({disk_gb(cache):.2f} GB) in {time.perf_counter() - t:.0f} s", flush=True)
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                str(cache),
                "--steps",
                str(args.steps),
                "--batch",
                str(args.batch),
            ]
            out = subprocess.run(
                cmd + (["--no-net"] if args.no_net else []), capture_output=True, text=True, check=False
            )
            if out.returncode:
                sys.exit(f"the run on {n:,} images failed:\n{out.stderr}")
            rows.append((n, disk_gb(cache), json.loads(out.stdout.splitlines()[-1])))
    finally:
        if not args.keep:
            for n in sizes:
                shutil.rmtree(root / f"cache_{n}", ignore_errors=True)
            if not args.dir:
                shutil.rmtree(root, ignore_errors=True)

    print(
        f"\n{args.steps} steps of batch {args.batch}, latents {args.shape}, {'reads only' if args.no_net else 'conv net step'}"
    )
    print(
        f"{'images':>9} {'entries':>9} {'cache GB':>9} {'RSS start':>10} {'RSS open':>9} {'RSS peak':>9} {'read ms/step':>13} {'ms/step':>8}"
    )
    for n, gb, r in rows:
        print(
            f"{n:>9,} {r['entries']:>9,} {gb:>9.2f} {r['rss_start_mb']:>8.1f}MB {r['rss_open_mb']:>7.1f}MB "
            f"{r['rss_peak_mb']:>7.1f}MB {r['read_ms_per_step']:>13.1f} {r['ms_per_step']:>8.1f}"
        )
    if len(rows) >= 2:
        grown = rows[-1][2]["rss_peak_mb"] - rows[0][2]["rss_peak_mb"]
        print(f"peak RSS difference, {rows[-1][0]:,} vs {rows[0][0]:,} images: {grown:+.1f} MB (goal: < 100 MB)")


if __name__ == "__main__":
    main()
