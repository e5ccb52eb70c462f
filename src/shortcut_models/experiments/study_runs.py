"""Train one study run through its budgets and score it at each, every result cached on disk.

Files of a run NAME (``Run.name``, e.g. ``digits/meanflow-own-seed1``) under the study's directory OUT:

- ``OUT/runs/NAME/``: the training run (resumable; one checkpoint kept);
- ``OUT/scores/NAME/BUDGET.json``: the scores at that budget (settings, rows, training seconds so far).

A budget's scores are written before the run trains past it, so a stopped study loses at most the
budget it was on; a rerun skips every budget whose scores match the plan's settings, once the run's
checkpoint is shown to hold the run the plan asks for (scores of a run trained with other settings are
refused, as resuming it would be).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from .. import checkpoints as ckpt
from ..config import build_config
from ..config.train_config import TrainConfig
from ..data import build_source
from ..data.digits import load_digits
from ..evaluation import ImageMetric, build_metric, evaluate_images, evaluate_points
from ..inference import load_model
from ..metrics import precision_recall
from ..metrics.digits_net import load_digits_feature_net
from ..objectives import OBJECTIVES, build_objective
from ..outputs import write_json
from ..training import resume
from .study_plan import PRESETS, Run, StudyPlan, main_runs, teacher_of
from .train import build_trainer, check_config


@dataclass(frozen=True)
class RunJob:
    """What a worker needs to train and score one run."""

    out: Path
    plan: StudyPlan
    run: Run
    progress: bool = False


def run_dir(out: Path, run: Run) -> Path:
    return out / "runs" / run.name


def score_file(out: Path, run: Run, budget: int) -> Path:
    return out / "scores" / run.name / f"{budget}.json"


def run_config(out: Path, plan: StudyPlan, run: Run, steps: int, extra: tuple[str, ...] = ()) -> TrainConfig:
    """The training config of ``run`` trained to ``steps``: its domain's preset and method, no evaluation
    during training, one checkpoint kept, a one-step sample sheet only (the study draws its own), its seed,
    the plan's device, the teacher run (distillation), on digits the plan's evaluation during training (runs from
    scratch), the run's recipe, on digits the plan's overrides (the user's: they win over the recipe), then
    ``extra``."""
    teacher = teacher_of(run, plan)
    keys = [f"steps={steps}", "eval_every=0", "keep_checkpoints=1", "sample_steps=[1]", f"seed={run.seed}"]
    keys.append(f"device={plan.device}")
    if teacher is not None and OBJECTIVES[run.method].teacher_run:
        keys.append(f"teacher={run_dir(out, teacher)}")
    digits = run.domain == "digits"
    if digits and not run.init:
        keys += plan.tracking
    user = plan.overrides if digits else []
    cfg = build_config(PRESETS[run.domain], run.method, None, [*keys, *run.overrides, *user, *extra])
    if run.init:
        cfg.init_from = str(run_dir(out, teacher))
    return cfg


def score_settings(plan: StudyPlan, run: Run, budget: int) -> dict[str, Any]:
    """What a budget's scores depend on besides the run itself (a cached file with others is redone). Every
    step count of ``eval_steps`` is scored at the study's largest budget once it is final (not ``settling``)
    and at the end of a fine-tuning run; ``budget_eval_steps`` elsewhere."""
    largest = budget == run.steps == plan.domain_steps(run.domain) and not plan.settling
    steps = plan.eval_steps if largest or (run.init and budget == run.steps) else plan.budget_eval_steps
    num = plan.eval_num if run.domain == "digits" else plan.toy_num
    measures = ["fd-digits", "nn1", "precision-recall"] if run.domain == "digits" else ["swd", "on-board"]
    return {
        "num": num,
        "steps": list(steps),
        "k": plan.pr_k,
        "seed": plan.sample_seed,
        "budget": budget,
        "measures": measures,
    }


def cached_scores(out: Path, plan: StudyPlan, run: Run, budget: int) -> list[dict[str, Any]] | None:
    file = score_file(out, run, budget)
    if not file.exists():
        return None
    saved, asked = json.loads(file.read_text()), score_settings(plan, run, budget)
    if not scored_as_asked(saved.get("settings", {}), asked):
        return None
    refuse_scores_of_another_run(out, plan, run, budget)
    return [row for row in saved["rows"] if row["steps"] in asked["steps"]]


def scored_as_asked(saved: dict[str, Any], asked: dict[str, Any]) -> bool:
    """Whether scores saved with ``saved`` settings hold those ``asked`` for: the same settings, at every step
    count asked for (more are kept where a budget was the largest before the study doubled it)."""
    same = {k: v for k, v in saved.items() if k != "steps"} == {k: v for k, v in asked.items() if k != "steps"}
    return same and set(asked["steps"]) <= set(saved.get("steps", ()))


def check_run_configs(out: Path, plan: StudyPlan) -> None:
    """Refuse the overrides any of the study's digits runs would refuse (as `shortcut train` checks them;
    the overrides apply to the digits runs only), before anything is written to ``out`` (UserError, exit 2)."""
    seen = set()
    for run in main_runs(plan):
        key = (run.domain, run.method, run.overrides)
        if run.domain == "digits" and key not in seen:  # seeds and budgets do not change what is checked
            seen.add(key)
            check_config(run_config(out, plan, run, plan.domain_steps(run.domain)))


def refuse_scores_of_another_run(out: Path, plan: StudyPlan, run: Run, budget: int) -> None:
    """Refuse cached scores of ``run`` at ``budget`` whose run directory holds another run: UserError naming
    the first differing setting when the checkpoint there was trained with other settings than the plan's
    (the check a trainer resuming it makes, ``resume.as_resumed``), except that where the teacher and the
    initial weights lie is not compared, so a study directory can be moved or runs copied between studies;
    a run without a readable checkpoint is not checked (its scores stand)."""
    checkpoint = ckpt.latest_checkpoint(run_dir(out, run))
    if checkpoint is None:
        return
    asked = run_config(out, plan, run, budget)
    classes = asked.network_classes(build_source(asked.data).num_classes)
    try:
        config = ckpt.read_config(checkpoint)
        resume.as_resumed(
            asked, build_objective(asked.objective, classes, asked.objective_args), checkpoint, config, sources=False
        )
    except ckpt.DamagedCheckpoint:
        return


@cache
def digits_scores_metric() -> ImageMetric:
    """FD in the digits-CNN features with the 1-NN two-sample test in pixels from the same samples."""
    return build_metric("fd-digits", "digits", True, extras=("nn1",))


@cache
def real_digit_features() -> torch.Tensor:
    """Digits-CNN features of the train split (the reference of precision and recall)."""
    return load_digits_feature_net().features(load_digits("train")[0])


def score_digits(plan: StudyPlan, run_path: Path, settings: dict[str, Any], progress: bool) -> list[dict[str, Any]]:
    """FD in the digits-CNN features, the 1-NN two-sample accuracy in pixels, precision and recall at each
    step count."""
    model = load_model(run_path, plan.device)
    kept: dict[int, list[torch.Tensor]] = {}
    rows = evaluate_images(
        model,
        settings["steps"],
        settings["num"],
        digits_scores_metric(),
        seed=settings["seed"],
        progress=progress,
        on_features=lambda n, f: kept.setdefault(n, []).append(f.cpu()),
    )
    for row in rows:
        row["precision"], row["recall"] = precision_recall(
            torch.cat(kept[row["steps"]]), real_digit_features(), settings["k"]
        )
    return rows


def score_points(plan: StudyPlan, run_path: Path, settings: dict[str, Any], progress: bool) -> list[dict[str, Any]]:
    """Sliced Wasserstein distance to fresh draws of the density, and the share on the board."""
    model = load_model(run_path, plan.device)
    return evaluate_points(model, settings["steps"], settings["num"], seed=settings["seed"], progress=progress)


SCORERS = {"digits": score_digits, "checkerboard": score_points}


def train_and_score(job: RunJob) -> list[dict[str, Any]]:
    """Train ``job.run`` through its budgets, scoring each before training past it; returns every row
    (cached budgets are read, not redone)."""
    rows: list[dict[str, Any]] = []
    for budget in job.run.budgets:
        cached = cached_scores(job.out, job.plan, job.run, budget)
        rows += cached if cached is not None else score_budget(job, budget, train_to(job, budget))
    return rows


def train_to(job: RunJob, budget: int) -> dict[str, float]:
    """Train ``job.run`` to ``budget`` steps (resuming), with the evaluation during training its config asks
    for; returns its training seconds so far, the evaluations' among them (``evaluating``), kept on disk."""
    out, run = job.out, job.run
    seconds_file = out / "scores" / run.name / "train_seconds.json"
    trainer = build_trainer(run_config(out, job.plan, run, budget), run_dir(out, run), progress=job.progress)
    if trainer.step > budget:
        raise RuntimeError(f"{run_dir(out, run)} has trained past {budget} steps before its scores were written")
    seconds = json.loads(seconds_file.read_text()) if seconds_file.exists() else {}
    t0 = time.perf_counter()
    trainer.run()
    if trainer.stopped_by_signal:  # checkpoint saved; rerunning the study resumes here
        raise KeyboardInterrupt
    evaluating = trainer.evaluator.seconds if trainer.evaluator is not None else 0.0
    spent = {
        "total": seconds.get("total", 0.0) + time.perf_counter() - t0,
        "evaluating": seconds.get("evaluating", 0.0) + evaluating,
    }
    seconds_file.parent.mkdir(parents=True, exist_ok=True)
    write_json(seconds_file, spent)
    return spent


def score_budget(job: RunJob, budget: int, seconds: dict[str, float]) -> list[dict[str, Any]]:
    """Score ``job.run`` at ``budget`` (its checkpoint now) and write OUT/scores/NAME/BUDGET.json."""
    out, plan, run = job.out, job.plan, job.run
    settings = score_settings(plan, run, budget)
    rows = SCORERS[run.domain](plan, run_dir(out, run), settings, job.progress)
    for row in rows:
        row.update(
            domain=run.domain,
            method=run.method,
            recipe=run.recipe,
            seed=run.seed,
            budget=budget,
            init=run.init,
            train_seconds=seconds["total"],
            eval_seconds=seconds["evaluating"],
        )
    write_json(score_file(out, run, budget), {"settings": settings, "rows": rows})
    return rows
