"""The benchmark scripts that a GPU session runs first (benchmarks/gpu_check.sh), on tiny settings here: a
broken script would waste the few minutes a GPU is lent. Their numbers are not asserted (timing is noise
here); what they count and name is."""

import os
import re
import runpy
import subprocess
import sys
import types
from pathlib import Path

import torch

from shortcut_models.models.dit import DiT

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def run_script(name: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(BENCHMARKS)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def dit_b2_flops() -> int:
    """FLOPs of one forward of DiT-B/2 on one 4x32x32 row, written out (a multiply-add = 2 FLOPs)."""
    c, n, depth, freq, patch_pixels = 768, 256, 12, 256, 2 * 2 * 4
    block = n * 12 * c * c + 2 * n * n * c + 6 * c * c  # qkv, proj, MLP per token; q k^T and P v; adaLN
    final = 2 * c * c + n * patch_pixels * c  # adaLN, head
    embed = n * patch_pixels * c + 2 * (freq * c + c * c)  # patches; time and step-size embedders
    return 2 * (depth * block + final + embed)


def test_forward_flops_count_every_product_of_dit_b2():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        forward_flops = runpy.run_path(str(BENCHMARKS / "objective_steps.py"))["forward_flops"]
    finally:
        sys.path.remove(str(BENCHMARKS))
    with torch.device("meta"):
        model = DiT.from_preset("DiT-B/2", input_size=32, in_channels=4, num_classes=1000)
    spec = types.SimpleNamespace(sample_shape=(4, 32, 32), num_classes=1000)
    run = types.SimpleNamespace(model=model, spec=spec, device=torch.device("meta"))
    assert forward_flops(run) == dit_b2_flops() == 46_005_485_568  # "about 46 GFLOP per forward"


def test_objective_steps_reports_mfu_consistent_with_its_times():
    out = run_script(
        "objective_steps.py",
        *("--repeats", "1", "--threads", "1", "--objective", "meanflow", "--peak-tflops", "0.5"),
        *("model=DiT-Nano", "data=synthetic:4x8x8", "batch_size=8"),
    )
    gflop = float(re.search(r"one forward of one row: ([\d.e-]+) GFLOP", out).group(1))
    rows = {m[0]: m[1:] for m in re.findall(r"^\s*(flow|meanflow)\s.*?([\d.]+)\s+([\d.]+)\s+([\d.]+)%$", out, re.M)}
    assert set(rows) == {"flow", "meanflow"}, out
    for name, cost in (("flow", 3.0), ("meanflow", 3.5)):  # forward + 2 backward passes per row
        ms, images, mfu = (float(v) for v in rows[name])
        # ms and img/s are printed with one decimal: ms's rounding (0.05) is a relative error of 0.05 / ms in
        # img/s, 1% at 5 ms (45 ms measured on 2 loaded cores; a faster machine gets there)
        assert abs(images - 8 / (ms / 1e3)) <= (0.01 + 0.05 / ms) * images + 0.05
        assert abs(mfu - 100 * cost * gflop * images / 500) <= 0.01 * mfu + 0.1


def test_jvp_attention_names_the_kernels():
    out = run_script(
        "jvp_attention.py",
        "--model",
        "DiT-Nano",
        "--shape",
        "1x8x8",
        "--rows",
        "4",
        "--classes",
        "10",
        "--repeats",
        "1",
    )

    def line(name: str) -> str:
        return next(row for row in out.splitlines() if row.strip().startswith(name))

    forward, own, func = line("forward"), line("own JVP"), line("torch.func.jvp")
    assert "fused: aten::_scaled_dot_product_flash_attention_for_cpu" in forward
    assert "no fused kernel;" in own and "the math kernel" in func
