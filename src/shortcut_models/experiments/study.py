"""The study: few-step generators trained on one network, data and budget, ranked by one command.

``shortcut study`` trains flow matching, shortcut, the paper's four baselines, MeanFlow and the newer
one-step methods (ESC, iMF, IMM, sCT: docs/methods.md) on
unconditional digits with the same network and the same number of training steps (the distillation
methods start from the study's flow-matching run, whose steps are counted separately), then measures

- the digits Fréchet distance at 1, 2, 4, 8 and 128 steps over the same noise for every method,
- improved precision and recall in the digits-CNN features (1 - precision: the share of failed samples),
- the training cost per step of each method relative to flow matching, measured side by side,
- one grid per method at 1, 2 and 4 steps from the same noise,

and writes ``OUT/report.md``. Every stage resumes: a rerun skips the trained runs, the evaluated
methods (OUT/eval/METHOD.json) and the timing (OUT/timing.json) whose settings match.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import build_config
from ..data.digits import load_digits
from ..evaluation import digits_metric, evaluate_images
from ..evaluation.image_metrics import ImageMetric
from ..inference import LoadedModel, load_model
from ..metrics import precision_recall
from ..metrics.digits_net import load_digits_feature_net
from ..objectives import OBJECTIVES
from ..outputs import write_json
from ..plotting import plot_metric_vs_steps
from ..training import Trainer
from .demo import comparison_grids
from .study_report import write_study_report
from .timing import interleaved_step_times, median_ratio

METHODS = (
    "flow",
    "shortcut",
    "consistency-training",
    "consistency-distillation",
    "progressive-distillation",
    "live-reflow",
    "meanflow",
    "esc",
    "imf",
    "imm",
    "sct",
)
TEACHER = "flow"  # the run the distillation methods start from
# Schedules counted in training steps, set by their authors for runs of hundreds of thousands of steps
# (ESC's terminal-time schedule, 20,000; sCT's tangent warm-up, 10,000): the study ends them at this share
# of its own budget, so that they run their course within it.
SCHEDULE_KNOBS = {"esc": "terminal_steps", "sct": "derivative_warmup_steps"}
SCHEDULE_SHARE = 0.1


@dataclass
class StudyPlan:
    """Budget of the study (defaults: `make study`, see docs/study/report.md for its time on 2 CPU cores)."""

    preset: str = "digits-uncond"
    overrides: list[str] = field(default_factory=list)
    steps: int = 4000
    methods: tuple[str, ...] = METHODS
    eval_num: int = 2000
    eval_steps: tuple[int, ...] = (1, 2, 4, 8, 128)
    grid_steps: tuple[int, ...] = (1, 2, 4)
    pr_k: int = 3
    timing_repeats: int = 20
    seed: int = 0


def method_config(out: Path, plan: StudyPlan, method: str, extra: tuple[str, ...] = ()):
    """The training config of ``method``: the preset, the study's steps, no evaluation during training,
    the teacher run for the distillation methods, then the plan's overrides."""
    teacher = [f"teacher={out / TEACHER}"] if OBJECTIVES[method].teacher_run else []
    schedule = [f"{SCHEDULE_KNOBS[method]}={round(plan.steps * SCHEDULE_SHARE)}"] if method in SCHEDULE_KNOBS else []
    return build_config(
        plan.preset,
        method,
        None,
        [f"steps={plan.steps}", "eval_every=0", *teacher, *schedule, *plan.overrides, *extra],
    )


def train_all(out: Path, plan: StudyPlan, progress: bool) -> dict[str, float]:
    """Train every method (flow matching first: it is the teacher); returns training wall seconds per
    method, those of earlier calls kept from OUT/train_seconds.json."""
    file = out / "train_seconds.json"
    seconds = json.loads(file.read_text()) if file.exists() else {}
    for method in (TEACHER, *[m for m in plan.methods if m != TEACHER]):
        trainer = Trainer(method_config(out, plan, method), out / method, progress=progress)
        if trainer.step >= plan.steps and method in seconds:
            continue
        t0 = time.perf_counter()
        trainer.run()
        if trainer.stopped_by_signal:  # checkpoint saved; rerunning the study resumes here
            raise KeyboardInterrupt
        seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - t0
        write_json(file, seconds)
    return seconds


def real_features() -> tuple[torch.Tensor, torch.Tensor]:
    """Digits-CNN features of the train split (the reference) and of the test split (the floor)."""
    net = load_digits_feature_net()
    return net.features(load_digits("train")[0]), net.features(load_digits("test")[0])


def evaluate_method(
    out: Path, plan: StudyPlan, model: LoadedModel, metric: ImageMetric, real: torch.Tensor, progress: bool
) -> list[dict[str, Any]]:
    """FD, precision and recall at every step count of the plan (cached in OUT/eval/METHOD.json)."""
    cached = out / "eval" / f"{model.spec.objective}.json"
    key = {"num": plan.eval_num, "steps": list(plan.eval_steps), "k": plan.pr_k, "checkpoint": str(model.path)}
    if cached.exists():
        saved = json.loads(cached.read_text())
        if saved.get("settings") == key:
            return saved["rows"]
    kept: dict[int, list[torch.Tensor]] = {}
    rows = evaluate_images(
        model,
        list(plan.eval_steps),
        plan.eval_num,
        metric,
        seed=plan.seed,
        progress=progress,
        on_features=lambda n, f: kept.setdefault(n, []).append(f.cpu()),
    )
    for row in rows:
        row["precision"], row["recall"] = precision_recall(torch.cat(kept[row["steps"]]), real, plan.pr_k)
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_json(cached, {"settings": key, "rows": rows})
    return rows


def measure_costs(out: Path, plan: StudyPlan) -> dict[str, dict[str, float]]:
    """Step time of every method relative to flow matching, steps alternated in one process (cached in
    OUT/timing.json), with each objective's cost model."""
    file = out / "timing.json"
    key = {"repeats": plan.timing_repeats, "methods": list(plan.methods), "threads": torch.get_num_threads()}
    if file.exists() and json.loads(file.read_text()).get("settings") == key:
        return json.loads(file.read_text())["costs"]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            m: Trainer(method_config(out, plan, m, ("logger=none",)), f"{tmp}/{m}", progress=False)
            for m in plan.methods
        }
        times = interleaved_step_times(trainers, plan.timing_repeats)
    costs = {}
    for m, trainer in trainers.items():
        forward, backward = trainer.objective.passes_per_row(trainer.cfg.batch_size)
        costs[m] = {
            "ratio": median_ratio(times[m], times[TEACHER]),
            "model": trainer.objective.step_cost(trainer.cfg.batch_size),
            "forward": forward,
            "backward": backward,
            "ms": 1e3 * sorted(times[m])[len(times[m]) // 2],
        }
    seconds = time.perf_counter() - t0
    write_json(file, {"settings": key, "costs": costs, "seconds": seconds})
    return costs


def run_study(out: Path, plan: StudyPlan, progress: bool = True) -> Path:
    """Run every stage (skipping those already done) and write OUT/report.md; returns its path."""
    unknown = [m for m in plan.methods if m not in OBJECTIVES]
    if unknown or TEACHER not in plan.methods:
        raise ValueError(f"methods must include {TEACHER!r} and be registered objectives; unknown: {unknown}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "plan.json", asdict(plan))
    t_start = time.perf_counter()
    train_seconds = train_all(out, plan, progress)
    metric = digits_metric()
    real, test = real_features()
    floor = precision_recall(test, real, plan.pr_k)
    models = {m: load_model(out / m, "cpu") for m in plan.methods}
    rows = [r for m in plan.methods for r in evaluate_method(out, plan, models[m], metric, real, progress)]
    plot = out / "fd_vs_steps.png"
    names = {name: cls.title for name, cls in OBJECTIVES.items()}
    plot_metric_vs_steps(rows, "fd_digits", plot, ylabel="FD (digits features)", names=names, log_y=True)
    grids = comparison_grids(out, plan, models)
    costs = measure_costs(out, plan)
    params = sum(p.numel() for p in models[TEACHER].model.parameters())
    stages = {
        "training": sum(train_seconds.values()),
        "evaluation": sum(float(r["seconds"]) for r in rows),
        "timing": json.loads((out / "timing.json").read_text()).get("seconds", 0.0),
    }
    return write_study_report(
        out,
        plan,
        rows,
        floor,
        costs,
        train_seconds,
        {**stages, "this call": time.perf_counter() - t_start},
        params,
        method_config(out, plan, TEACHER),
        {"fd": plot, "grids": grids},
        torch.get_num_threads(),
    )
