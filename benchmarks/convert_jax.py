"""Time and peak memory of `shortcut convert --from-jax` on a DiT-B/2-sized checkpoint.

Writes a checkpoint the way the authors' trainer pickles one (``{"train_state": {"params",
"params_ema", "opt_state", "step"}, "_timestamp"}``) with DiT-B/2 shapes (130M parameters; online,
EMA and both Adam moments: four copies, ~2.1 GB), with random float32 values and numpy alone (the
Adam state as optax's named tuple when optax is installed). Then converts it in a fresh process
(`shortcut convert`, exactly as a user runs it) and reports the wall time and that process's peak
resident memory (VmHWM), next to the checkpoint's size. The goals: under a minute on 2 cores, and
peak memory under 3x the checkpoint size.

    python benchmarks/convert_jax.py                 # DiT-B/2 (~2.1 GB file in a temporary directory)
    python benchmarks/convert_jax.py --preset DiT-S/2 --dir /data/tmp
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from shortcut_models.convert import AuthorsArchitecture, authors_parameter_shapes, nest
from shortcut_models.models import DIT_PRESETS


def random_tree(arch: AuthorsArchitecture, rng: np.random.Generator) -> dict:
    shapes = authors_parameter_shapes(arch)
    return nest({path: rng.standard_normal(shape, dtype=np.float32) * 0.02 for path, shape in shapes.items()})


def write_checkpoint(path: Path, arch: AuthorsArchitecture, seed: int = 0) -> int:
    """Pickle an authors'-style checkpoint of random values; returns the number of parameters."""
    rng = np.random.default_rng(seed)
    params, ema, mu, nu = (random_tree(arch, rng) for _ in range(4))
    try:  # the optimizer state of their optax.chain(optax.adamw(...))
        import optax

        adam = optax.ScaleByAdamState(count=np.int32(1000), mu=mu, nu=nu)
        opt_state = ((adam, optax.EmptyState(), optax.EmptyState()),)
    except ImportError:
        opt_state = ((np.int32(1000), mu, nu),)
    state = {"params": params, "params_ema": ema, "opt_state": opt_state, "step": 410_001}
    with open(path, "wb") as f:
        pickle.dump({"train_state": state, "_timestamp": time.time()}, f, protocol=pickle.HIGHEST_PROTOCOL)
    return sum(int(np.prod(s)) for s in authors_parameter_shapes(arch).values())


def measure(preset: str, workdir: Path) -> dict:
    p = DIT_PRESETS[preset]
    arch = AuthorsArchitecture(p["hidden_size"], p["depth"], p["patch_size"], 4, 4.0, 0, 2)
    source = workdir / "checkpoint.pkl"
    n_params = write_checkpoint(source, arch)
    size = source.stat().st_size
    # Peak memory of the converting process only: a tiny launcher runs the CLI and reads its VmHWM.
    launcher = (
        "import sys, runpy\n"
        "sys.argv = ['shortcut'] + sys.argv[1:]\n"
        "try:\n"
        "    runpy.run_module('shortcut_models', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "else:\n"
        "    code = 0\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print('PEAK_KB', peak, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", launcher, "convert", "--from-jax", str(source), "--preset", preset]
        + ["--out", str(workdir / "run"), "--quiet"],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"conversion failed: {proc.stderr.strip()}")
    peak = int(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("PEAK_KB"))) * 1024
    return {
        "preset": preset,
        "parameters": n_params,
        "checkpoint_bytes": size,
        "seconds": round(seconds, 1),
        "peak_rss_bytes": peak,
        "peak_over_checkpoint": round(peak / size, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="DiT-B/2", choices=list(DIT_PRESETS))
    parser.add_argument("--dir", help="working directory (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        result = measure(args.preset, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    gb = 1024**3
    print(
        f"{result['preset']}: {result['parameters'] / 1e6:.1f}M parameters, checkpoint "
        f"{result['checkpoint_bytes'] / gb:.2f} GiB; conversion {result['seconds']} s, peak memory "
        f"{result['peak_rss_bytes'] / gb:.2f} GiB = {result['peak_over_checkpoint']}x the checkpoint"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
