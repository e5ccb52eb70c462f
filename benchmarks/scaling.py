"""Data-parallel throughput: training samples per second with 1, 2, 4, ... processes under torchrun.

Every process keeps the same micro-batch (weak scaling: ``batch_size = processes x --per-gpu``),
trains ``--steps`` steps, and the samples/s of the last logging interval (the second half of the
run, after warm-up) is read from RUN/metrics.csv. Efficiency = throughput(N) / (N x throughput(1)).
Extra ``key=value`` arguments go to ``shortcut train``.

    # one 8-GPU machine, DiT-B/2 on a latent cache made by `shortcut encode` (docs/latents.md)
    python benchmarks/scaling.py --preset imagenet256 --per-gpu 32 --procs 1,2,4,8 data=latents:DIR
    # CPU smoke run of the script itself
    python benchmarks/scaling.py --preset checkerboard --per-gpu 64 --procs 1,2 --device cpu --steps 40
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def throughput(procs: int, args: argparse.Namespace, tmp: Path) -> float:
    out = tmp / f"procs{procs}"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={procs}",
        "-m",
        "shortcut_models",
        "train",
        "--quiet",
        "--preset",
        args.preset,
        "--out",
        str(out),
        f"batch_size={procs * args.per_gpu}",
        f"steps={args.steps}",
        f"log_every={args.steps // 2}",
        f"ckpt_every={10 * args.steps}",
        "sample_steps=[1]",
        "logger=none",
        f"device={args.device}",
        *args.overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    with open(out / "metrics.csv", newline="") as fh:
        return float(list(csv.DictReader(fh))[-1]["samples_per_sec"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="digits")
    parser.add_argument("--per-gpu", type=int, default=32, help="rows per process per step")
    parser.add_argument("--procs", default="1,2", help="comma-separated process counts")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    counts = [int(p) for p in args.procs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        results = {n: throughput(n, args, Path(tmp)) for n in counts}
    base = results[counts[0]] / counts[0]
    print(f"{'processes':>10} {'samples/s':>12} {'per process':>12} {'efficiency':>11}")
    for n, sps in results.items():
        print(f"{n:>10} {sps:>12.1f} {sps / n:>12.1f} {sps / (n * base):>11.2f}")


if __name__ == "__main__":
    main()
