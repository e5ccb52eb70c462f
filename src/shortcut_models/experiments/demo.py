"""The main job: the study of shortcut models against flow matching in miniature, on embedded data.

``shortcut demo`` trains a flow-matching model and a shortcut model on unconditional digits with the
same budget, tracks the digits Fréchet distance at 1 and 128 steps during training on a fixed noise
set, evaluates both at 1..128 steps over thousands of samples, renders side-by-side grids from the same
noise, measures the training-cost ratio side by side, and writes ``OUT/report.md``. Every stage is
resumable: a rerun skips the training and evaluations already done.
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from ..config import build_config
from ..evaluation import digits_metric, evaluate_images, write_results
from ..evaluation.during_training import FILE as EVAL_FILE
from ..images import save_sheet
from ..inference import LoadedModel, load_model, write_sample_sheets
from ..outputs import save_figure, write_json
from ..training import Trainer
from .report import NAMES, write_report
from .timing import interleaved_step_times, median_ratio
from .train import build_trainer

OBJECTIVES = ("flow", "shortcut")  # the two objectives the study compares (names in the objective registry)


@dataclass
class DemoPlan:
    """Budget of the demo (defaults: the README's `make demo`, 7-18 minutes on 2 CPU cores)."""

    preset: str = "digits-uncond"
    overrides: list[str] = field(default_factory=list)
    track_every: int = 2000
    track_num: int = 2000
    track_steps: tuple[int, ...] = (1, 128)
    eval_num: int = 5000
    eval_steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    grid_steps: tuple[int, ...] = (1, 2, 4, 128)
    timing_repeats: int = 20
    conditional_ckpt: str | None = None
    finetune_fractions: tuple[float, ...] = ()  # e.g. (0.1, 0.25, 0.5): fine-tune flow matching into shortcut
    finetune_steps: tuple[int, ...] = (1, 2, 4, 128)
    seed: int = 0


def tracking_overrides(plan: DemoPlan) -> list[str]:
    """Evaluation during training (RUN/eval.csv) at the plan's tracking budget, then the plan's overrides."""
    steps = ",".join(str(n) for n in plan.track_steps)
    return [
        f"eval_every={plan.track_every}",
        f"eval_num={plan.track_num}",
        f"eval_steps=[{steps}]",
        "eval_metric=fd-digits",
        *plan.overrides,
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def train_both(out: Path, plan: DemoPlan, progress: bool) -> dict[str, float]:
    """Train flow matching then shortcut (resumable), each evaluated during training; returns the wall
    seconds spent training each in this call and, under "evaluating", their evaluations' share."""
    seconds, evaluating = {}, 0.0
    for objective in OBJECTIVES:
        cfg = build_config(plan.preset, objective, None, tracking_overrides(plan))
        trainer = build_trainer(cfg, out / objective, progress=progress)
        t0 = time.perf_counter()
        trainer.run()
        if trainer.stopped_by_signal:  # checkpoint saved; rerunning the demo resumes here
            raise KeyboardInterrupt
        seconds[objective] = time.perf_counter() - t0
        evaluating += trainer.evaluator.seconds if trainer.evaluator is not None else 0.0
    return {**seconds, "evaluating": evaluating}


def evaluate_both(out: Path, plan: DemoPlan, models: dict[str, LoadedModel], metric, progress: bool) -> list[dict]:
    """Final evaluation at every step count (cached in OUT/eval/metrics.json when settings match)."""
    eval_dir = out / "eval"
    key = {"num": plan.eval_num, "steps": list(plan.eval_steps), "checkpoints": [str(m.path) for m in models.values()]}
    cached = eval_dir / "metrics.json"
    if cached.exists():
        saved = json.loads(cached.read_text())
        if saved.get("settings") == key:
            return saved["rows"]
    rows = []
    for model in models.values():
        rows += evaluate_images(model, list(plan.eval_steps), plan.eval_num, metric, seed=plan.seed, progress=progress)
    write_results(rows, eval_dir, "fd-digits")
    write_json(cached, {"metric": "fd-digits", "settings": key, "rows": rows})
    return rows


def comparison_grids(out: Path, plan: DemoPlan, models: dict[str, LoadedModel]) -> Path:
    """One panel per (model, step count) from the same 64 noise vectors; flow matching above shortcut."""
    matrix = []
    for objective, model in models.items():
        matrix.append(
            [
                (
                    f"{NAMES[objective]}, {n} step{'s' if n > 1 else ''}",
                    model.generate(64, n, seed=plan.seed + 2).clamp(-1, 1),
                )
                for n in plan.grid_steps
            ]
        )
    path = out / "grids.png"
    save_sheet(matrix, path, rows=8)
    return path


def plot_tracking(out: Path, plan: DemoPlan) -> Path:
    """Fréchet distance against training step, 1 and 128 steps, both models."""
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    for objective in OBJECTIVES:
        rows = read_csv(out / objective / EVAL_FILE)
        for n in plan.track_steps:
            sel = sorted((int(r["step"]), float(r["fd_digits"])) for r in rows if int(r["steps"]) == n)
            if sel:
                style = "-" if objective == "shortcut" else "--"
                ax.plot(*zip(*sel), style, marker="o", label=f"{NAMES[objective]}, {n} step{'s' if n > 1 else ''}")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"FD (digits features, {plan.track_num} samples)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "fd_vs_training_step.png"
    save_figure(fig, path)
    return path


def measure_cost_ratio(plan: DemoPlan) -> dict[str, float]:
    """Shortcut over flow-matching training-step time, same model and batch, interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            obj: Trainer(
                build_config(plan.preset, obj, None, [*plan.overrides, "logger=none", "eval_every=0"]),
                f"{tmp}/{obj}",
                progress=False,
            )
            for obj in OBJECTIVES
        }
        times = interleaved_step_times(trainers, plan.timing_repeats)
        shortcut = trainers["shortcut"]
    return {
        "ratio": median_ratio(times["shortcut"], times["flow"]),
        "cost_model": shortcut.objective.step_cost(shortcut.cfg.batch_size),
        "flow_ms": 1e3 * sorted(times["flow"])[len(times["flow"]) // 2],
        "shortcut_ms": 1e3 * sorted(times["shortcut"])[len(times["shortcut"]) // 2],
    }


def conditional_section(plan: DemoPlan, metric, out: Path, progress: bool) -> dict[str, Any] | None:
    """Class accuracy by step count and guided sample sheets of a class-conditional checkpoint."""
    if not plan.conditional_ckpt:
        return None
    model = load_model(plan.conditional_ckpt, "cpu")
    rows = {}
    for w in (1.0, 1.5):
        rows[w] = evaluate_images(
            model,
            list(plan.grid_steps),
            min(plan.eval_num, 2000),
            metric,
            seed=plan.seed,
            cfg_scale=w,
            progress=progress,
        )
    sheet = write_sample_sheets(model, out / "conditional", plan.grid_steps, cfg_scale=1.5)
    return {"label": model.label, "rows": rows, "sheet": sheet}


def finetune_section(out: Path, plan: DemoPlan, eval_rows: list[dict], metric, progress: bool) -> list[dict] | None:
    """Flow matching fine-tuned into shortcut for fractions of the from-scratch budget, evaluated like the rest.

    Each run starts from the flow-matching run's weights (``init_from``), trains ``fraction * steps``
    shortcut steps, and is evaluated with the same samples count and noise as the main evaluation.
    """
    if not plan.finetune_fractions:
        return None
    scratch = build_config(plan.preset, "shortcut", None, plan.overrides)
    rows = [r for r in eval_rows if int(r["steps"]) in plan.finetune_steps]
    for r in rows:
        r["budget_fraction"] = 0.0 if r["objective"] == "flow" else 1.0
    for fraction in plan.finetune_fractions:
        steps = max(1, round(scratch.steps * fraction))
        run_dir = out / f"finetune-{round(fraction * 100)}pct"
        cfg = build_config(plan.preset, "shortcut", None, [*plan.overrides, f"steps={steps}", "eval_every=0"])
        cfg.init_from = str(out / "flow")
        trainer = Trainer(cfg, run_dir, progress=progress)
        trainer.run()
        if trainer.stopped_by_signal:
            raise KeyboardInterrupt
        cached = run_dir / "eval.json"
        if cached.exists() and json.loads(cached.read_text()).get("num") == plan.eval_num:
            new = json.loads(cached.read_text())["rows"]
        else:
            new = evaluate_images(
                load_model(run_dir, "cpu"),
                list(plan.finetune_steps),
                plan.eval_num,
                metric,
                seed=plan.seed,
                progress=progress,
            )
            for r in new:
                r["objective"], r["budget_fraction"] = "finetune", fraction
            write_json(cached, {"num": plan.eval_num, "rows": new})
        rows += new
    return rows


def run_demo(out: Path, plan: DemoPlan, progress: bool = True) -> Path:
    """Run every stage (skipping those already done) and write OUT/report.md; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "plan.json", asdict(plan))
    t_start = time.perf_counter()
    train_seconds = train_both(out, plan, progress)
    metric = digits_metric()
    models = {obj: load_model(out / obj, "cpu") for obj in OBJECTIVES}
    rows = evaluate_both(out, plan, models, metric, progress)
    grids = comparison_grids(out, plan, models)
    tracking = plot_tracking(out, plan)
    cost = measure_cost_ratio(plan)
    conditional = conditional_section(plan, metric, out, progress)
    finetune = finetune_section(out, plan, rows, metric, progress)
    params = sum(p.numel() for p in models["shortcut"].model.parameters())
    return write_report(
        out,
        plan,
        rows,
        cost,
        train_seconds,
        time.perf_counter() - t_start,
        params,
        build_config(plan.preset, "shortcut", None, plan.overrides),
        grids,
        tracking,
        conditional,
        torch.get_num_threads(),
        finetune,
    )
