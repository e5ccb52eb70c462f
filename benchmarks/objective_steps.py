"""Every objective's training step over flow matching's, against its cost model, at the study's setting.

Trainers of every registered objective are built from the study's preset (``digits-uncond``: DiT-Digits/4,
batch 64; the methods that need a teacher run get a flow-matching run of two steps, which costs the same
per step as a trained one) and their steps are alternated in one process (the order flips every round),
so machine noise hits all alike; the median of per-round ratios is printed next to the cost model
(forward, backward passes per row, a backward counted as two forwards, a Jacobian-vector product as two
forwards: ``Objective.step_cost``).

``--memory`` measures the peak memory of one step instead: each objective in a fresh process, the peak
resident set size (``ru_maxrss``) over three steps minus the resident size just before them (the
network, optimiser and data already built), so the figure is what the step itself allocates.

    python benchmarks/objective_steps.py --repeats 20
    python benchmarks/objective_steps.py --memory --objective flow --objective meanflow
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

from shortcut_models.config import build_config
from shortcut_models.experiments.timing import interleaved_step_times, median_ratio
from shortcut_models.objectives import OBJECTIVES
from shortcut_models.runtime import tune_allocator
from shortcut_models.training import Trainer

PRESET = "digits-uncond"


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
        before = rss_bytes()
        for i in range(3):
            float(run.train_step(i)["loss"])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"objective": objective, "peak_mib": (peak - before) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--objective", action="append", choices=list(OBJECTIVES), help="default: every one")
    parser.add_argument("--memory", action="store_true", help="peak memory of a step, each in a fresh process")
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
    print(f"{'objective':>26} {'passes f/b':>11} {'model':>7} {'measured':>9} {'/ model':>8} {'ms':>7}")
    for name, run in runs.items():
        forward, backward = run.objective.passes_per_row(run.cfg.batch_size)
        model = run.objective.step_cost(run.cfg.batch_size)
        ratio = median_ratio(times[name], times["flow"])
        ms = 1e3 * statistics.median(times[name])
        print(
            f"{name:>26} {forward:>5.3g} / {backward:<3.3g} {model:>7.3f} {ratio:>9.3f} {ratio / model:>8.2f} {ms:>7.1f}"
        )


if __name__ == "__main__":
    main()
