"""Every objective's training step over flow matching's, against its cost model, at the study's setting.

Trainers of every registered objective are built from the study's preset (``digits-uncond``: DiT-Digits/4,
batch 64; the methods that need a teacher run get a flow-matching run of two steps, which costs the same
per step as a trained one) and their steps are alternated in one process (the order flips every round),
so machine noise hits all alike; the median of per-round ratios is printed next to the cost model
(forward, backward passes per row, a backward counted as two forwards, a Jacobian-vector product as two
forwards: ``Objective.step_cost``).

``--memory`` measures the peak memory of one step instead: each objective in a fresh process, the peak
resident set size (``ru_maxrss``) over three steps minus the resident size just before them (the
network, optimiser and data already built), so the figure is what the step itself allocates; on a GPU,
the peak of allocated GPU memory over the three steps minus the allocated memory before them.

Trailing ``key=value`` overrides change the setting for every objective, e.g. the GPU check's DiT-B/2 at
batch 256 on synthetic latents in bf16. There (or with ``--peak-tflops``) every row also gets images per
second and the model FLOPs utilisation (MFU): the FLOPs the step's cost model stands for (its passes per
row times one forward of one row, counted by ``torch.utils.flop_counter`` with a multiply-add as 2 FLOPs
and attention by its math kernel; a backward counted as 2 forwards), per second, over the device's peak.

    python benchmarks/objective_steps.py --repeats 20
    python benchmarks/objective_steps.py --memory --objective flow --objective meanflow
    python benchmarks/objective_steps.py --repeats 10 model=DiT-B/2 data=synthetic:4x32x32 batch_size=256 precision=bf16
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from shortcut_models.config import build_config
from shortcut_models.experiments.timing import interleaved_step_times, median_ratio
from shortcut_models.objectives import OBJECTIVES
from shortcut_models.runtime import tune_allocator
from shortcut_models.training import Trainer

PRESET = "digits-uncond"
# dense bf16 tensor-core peaks from the vendors' datasheets (SXM parts), TFLOP/s, by a part of the device name
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "B200": 2250.0, "A100": 312.0}


def trainer(objective: str, out: Path, teacher: Path, extra: list[str]) -> Trainer:
    needs = [f"teacher={teacher}"] if OBJECTIVES[objective].teacher_run else []
    cfg = build_config(PRESET, objective, None, ["logger=none", "eval_every=0", *needs, *extra])
    return Trainer(cfg, out / objective, progress=False)


def teacher_run(out: Path, extra: list[str]) -> Path:
    """A flow-matching run of two steps: what the distillation methods load as their teacher."""
    cfg = build_config(PRESET, "flow", None, ["logger=none", "eval_every=0", "steps=2", "sample_steps=[1]", *extra])
    run = Trainer(cfg, out / "teacher", progress=False)
    run.run()
    return out / "teacher"


def forward_flops(run: Trainer) -> float:
    """FLOPs of one forward pass of the run's network on one row (multiply-add = 2; attention counted
    through its math kernel, whose products the counter sees)."""
    model, shape = run.model, run.spec.sample_shape
    x = torch.zeros((1, *shape), device=run.device)
    t, d = torch.zeros(1, device=run.device), torch.ones(1, device=run.device)
    y = torch.full((1,), run.spec.num_classes, dtype=torch.long, device=run.device)
    with FlopCounterMode(display=False) as counter, sdpa_kernel([SDPBackend.MATH]), torch.no_grad():
        model(x, t, d, y)
    return float(counter.get_total_flops())


def peak_tflops(device: torch.device, given: float) -> float:
    """The device's dense bf16 peak (``given`` when > 0; 0 when unknown: no MFU column)."""
    if given > 0 or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((peak for part, peak in PEAK_BF16_TFLOPS.items() if part in name), 0.0)


def rss_bytes() -> int:
    """The current resident set size of this process (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def step_memory(objective: str, extra: list[str]) -> dict[str, float]:
    """(In this process) peak resident memory of three steps of ``objective`` above the memory before them."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        teacher = teacher_run(out, extra) if OBJECTIVES[objective].teacher_run else out
        run = trainer(objective, out, teacher, extra)
        cuda = run.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(run.device)
            torch.cuda.reset_peak_memory_stats(run.device)
        before = torch.cuda.memory_allocated(run.device) if cuda else rss_bytes()
        for i in range(3):
            float(run.train_step(i)["loss"])
        if cuda:
            peak = torch.cuda.max_memory_allocated(run.device)
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"objective": objective, "peak_mib": (peak - before) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--objective", action="append", choices=list(OBJECTIVES), help="default: every one")
    parser.add_argument("--memory", action="store_true", help="peak memory of a step, each in a fresh process")
    parser.add_argument(
        "--peak-tflops", type=float, default=0.0, help="the device's peak for MFU (default: known GPUs' bf16 peak)"
    )
    parser.add_argument("--memory-one", help=argparse.SUPPRESS)  # the child process of --memory
    parser.add_argument("overrides", nargs="*", help="extra key=value config overrides for every run")
    args = parser.parse_args()
    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_one:
        print(json.dumps(step_memory(args.memory_one, args.overrides)))
        return
    names = args.objective or list(OBJECTIVES)
    names = ["flow", *[n for n in names if n != "flow"]]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, preset {PRESET}")
    if args.memory:
        print(f"{'objective':>26} {'peak MiB over the step':>24} {'vs flow':>8}")
        base = None
        for name in names:
            cmd = [sys.executable, __file__, "--memory-one", name, "--threads", str(torch.get_num_threads())]
            result = json.loads(
                subprocess.run([*cmd, *args.overrides], capture_output=True, text=True, check=True).stdout
            )
            base = base or result["peak_mib"]
            print(f"{name:>26} {result['peak_mib']:>24.1f} {result['peak_mib'] / base:>8.2f}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        teacher = teacher_run(out, args.overrides) if any(OBJECTIVES[n].teacher_run for n in names) else out
        runs = {name: trainer(name, out, teacher, args.overrides) for name in names}
        times = interleaved_step_times(runs, args.repeats)
        flow = runs["flow"]
        peak = peak_tflops(flow.device, args.peak_tflops)
        row_flops = forward_flops(flow) if peak else 0.0
    if peak:
        print(f"one forward of one row: {row_flops / 1e9:.4g} GFLOP; peak {peak:g} TFLOP/s")
    extra = f" {'img/s':>8} {'MFU':>6}" if peak else ""
    print(f"{'objective':>26} {'passes f/b':>11} {'model':>7} {'measured':>9} {'/ model':>8} {'ms':>7}{extra}")
    for name, run in runs.items():
        batch = run.cfg.batch_size
        forward, backward = run.objective.passes_per_row(batch)
        model = run.objective.step_cost(batch)
        ratio = median_ratio(times[name], times["flow"])
        seconds = statistics.median(times[name])
        line = f"{name:>26} {forward:>5.3g} / {backward:<3.3g} {model:>7.3f} {ratio:>9.3f} {ratio / model:>8.2f}"
        line += f" {1e3 * seconds:>7.1f}"
        if peak:  # the cost model's passes: (forward + 2 backward) forwards of every row
            mfu = (forward + 2 * backward) * row_flops * batch / seconds / (peak * 1e12)
            line += f" {batch / seconds:>8.1f} {100 * mfu:>5.1f}%"
        print(line)


if __name__ == "__main__":
    main()
