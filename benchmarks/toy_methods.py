"""The study's methods on the 2-D checkerboard: train each at one budget, score it without a feature network.

Every method of the study (every registered objective) is trained on the ``checkerboard`` preset
(a residual MLP) for ``--steps`` steps of ``--batch`` points, with the study's conventions: the
distillation methods start from the flow-matching run of the same seed and recipe, and the schedules
counted in steps (ESC's terminal steps, sCT's tangent warm-up) end at 10% of the budget. Each model is
then scored by :func:`shortcut_models.evaluation.points.evaluate_points` at 1, 2, 4, 8 and 128 steps:
the sliced Wasserstein distance of ``--num`` samples to ``--num`` fresh points of the density (the
floor: two fresh sets), and the share of samples on the filled squares.

Recipes: ``own`` (each method's defaults) and ``common`` (logit-normal times, plain squared error, the
online network as target: the study's common recipe). Runs and scores are kept in ``--out`` and a rerun
skips them; the table (mean over seeds, and the spread max - min) is printed as Markdown, and
``--out``/results.json holds every row with the training and evaluation seconds.

    OMP_NUM_THREADS=1 python benchmarks/toy_methods.py --threads 1 --seeds 0   # 1,000 steps of 256 points
    OMP_NUM_THREADS=1 python benchmarks/toy_methods.py --threads 1 --steps 200 --batch 128 --num 1000 \
        --seeds 0 1 2 --recipes own common   # the study's whole grid at the budget that fits its minutes
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from shortcut_models.config import build_config
from shortcut_models.evaluation.points import evaluate_points
from shortcut_models.experiments.study_plan import SCHEDULE_SHARE, TEACHER
from shortcut_models.inference import load_model
from shortcut_models.objectives import OBJECTIVES
from shortcut_models.training import Trainer

PRESET = "checkerboard"
EVAL_STEPS = [1, 2, 4, 8, 128]
RECIPES = {
    "own": [],
    "common": ["time_sampler=logit-normal", "loss_weight=mse", "target_network=online"],
}


def overrides(args: argparse.Namespace, run: Path, method: str, recipe: str, seed: int) -> list[str]:
    """The training overrides of one run: budget, seed, no evaluation or logs, one cheap sample sheet."""
    teacher = [f"teacher={run.parent / TEACHER}"] if OBJECTIVES[method].teacher_run else []
    knob = OBJECTIVES[method].schedule_knob
    schedule = [f"{knob}={round(args.steps * SCHEDULE_SHARE)}"] if knob else []
    budget = [f"steps={args.steps}", f"batch_size={args.batch}", f"seed={seed}"]
    quiet = ["eval_every=0", "logger=none", "sample_steps=[1]", f"ckpt_every={args.steps}"]
    return [*budget, *quiet, *teacher, *schedule, *RECIPES[recipe]]


def train(args: argparse.Namespace, run: Path, method: str, recipe: str, seed: int) -> float:
    """Train one run (skipped when finished); its training seconds, kept in RUN/train_seconds.txt."""
    done = run / "train_seconds.txt"
    cfg = build_config(PRESET, method, None, overrides(args, run, method, recipe, seed))
    trainer = Trainer(cfg, run, progress=False)
    if trainer.step >= args.steps and done.exists():
        return float(done.read_text())
    t0 = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - t0
    done.write_text(f"{seconds}\n")
    return seconds


def evaluate(args: argparse.Namespace, run: Path) -> list[dict]:
    """The scores of one run at EVAL_STEPS (kept in RUN/points.json for the same ``--num``)."""
    cached = run / "points.json"
    if cached.exists() and json.loads(cached.read_text())["num"] == args.num:
        return json.loads(cached.read_text())["rows"]
    rows = evaluate_points(load_model(run, "cpu"), EVAL_STEPS, args.num, seed=0)
    cached.write_text(json.dumps({"num": args.num, "rows": rows}, indent=2) + "\n")
    return rows


def table(results: list[dict], recipe: str) -> str:
    """Markdown: per method, SWD at each step count (mean over seeds, spread), on-board share at 1 and 128 steps."""
    mine = [r for r in results if r["recipe"] == recipe]
    seeds = sorted({r["seed"] for r in mine})
    head = ["method", *[f"SWD {n}" for n in EVAL_STEPS], "on board 1", "on board 128", "train s"]
    lines = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]

    def cell(values: list[float], digits: int = 3) -> str:
        mean = statistics.fmean(values)
        return f"{mean:.{digits}f}" + (f" ±{(max(values) - min(values)) / 2:.{digits}f}" if len(values) > 1 else "")

    for method in dict.fromkeys(r["method"] for r in mine):
        runs = [r for r in mine if r["method"] == method]
        by_steps = {n: [next(x for x in r["rows"] if x["steps"] == n) for r in runs] for n in EVAL_STEPS}
        swd = [cell([x["swd"] for x in by_steps[n]]) for n in EVAL_STEPS]
        board = [cell([x["on_board"] for x in by_steps[n]], 2) for n in (1, 128)]
        seconds = statistics.fmean(r["train_seconds"] for r in runs)
        lines.append(f"| {OBJECTIVES[method].title} | {' | '.join(swd)} | {' | '.join(board)} | {seconds:.1f} |")
    floor = statistics.fmean(r["rows"][0]["swd_floor"] for r in mine)
    lines.append(f"\nfloor (two fresh sets of {mine[0]['num']} points): {floor:.3f}; seeds {seeds}; ± half the range")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps of every run")
    parser.add_argument("--batch", type=int, default=256, help="points per training batch")
    parser.add_argument("--num", type=int, default=2000, help="samples (and fresh points) per score")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=["own"])
    parser.add_argument("--methods", nargs="+", choices=list(OBJECTIVES), default=list(OBJECTIVES))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=Path("runs/toy-methods"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [TEACHER, *[m for m in args.methods if m != TEACHER]]  # the teacher first
    results, t_start = [], time.perf_counter()
    for recipe in args.recipes:
        for seed in args.seeds:
            for method in methods:
                run = args.out / f"steps{args.steps}-batch{args.batch}" / recipe / f"seed{seed}" / method
                train_seconds = train(args, run, method, recipe, seed)
                t0 = time.perf_counter()
                rows = evaluate(args, run)
                results.append(
                    {
                        "method": method,
                        "recipe": recipe,
                        "seed": seed,
                        "num": args.num,
                        "train_seconds": train_seconds,
                        "eval_seconds": sum(r["seconds"] for r in rows),
                        "rows": rows,
                    }
                )
                one = {r["steps"]: r for r in rows}
                print(
                    f"{recipe} seed {seed} {method}: train {train_seconds:.1f}s, eval {time.perf_counter() - t0:.1f}s, "
                    f"SWD@1 {one[1]['swd']:.3f} @128 {one[128]['swd']:.3f}, on board@128 {one[128]['on_board']:.2f}",
                    flush=True,
                )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{torch.get_num_threads()} thread(s); steps {args.steps}, batch {args.batch}, num {args.num}")
    train_s, eval_s = sum(r["train_seconds"] for r in results), sum(r["eval_seconds"] for r in results)
    print(
        f"{len(results)} runs: training {train_s:.0f}s + evaluation {eval_s:.0f}s "
        f"(this call {time.perf_counter() - t_start:.0f}s wall, imports and skipped runs aside)"
    )
    for recipe in args.recipes:
        print(f"\n### recipe: {recipe}\n\n{table(results, recipe)}")


if __name__ == "__main__":
    main()
