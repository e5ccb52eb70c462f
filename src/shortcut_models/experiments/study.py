"""The study: few-step generators trained on one network, ranked over several seeds by one command.

``shortcut study`` trains flow matching, shortcut, the paper's four baselines, MeanFlow and the newer
one-step methods (ESC, iMF, IMM, sCT: docs/methods.md) on unconditional digits and on the 2-D
checkerboard, each with its own recipe and with one common recipe, over several training seeds
(study_plan.py says which runs), then

- scores every run at 1, 2, 4, 8 and 128 sampling steps from the same noise: on digits the Fréchet
  distance in the digits-CNN features, precision and recall, and a second metric of another kind; on
  the checkerboard the sliced Wasserstein distance to fresh draws of the density;
- with ``--full``: scores the runs at four budgets, ablates the best one-step method without a teacher,
  and fine-tunes flow matching into shortcut, into that method, into iMF and into each method meant to start
  from a flow-matching run (Decoupled MeanFlow);
- measures each method's training step against flow matching's, side by side;

and writes ``OUT/report.md`` (means with 95% intervals over seeds; rankings say which gaps are
significant, Holm-corrected over the pairs of methods compared; beside them a ranking at equal training
cost) and ``OUT/answers.json`` (the best methods at 1, 2 and 4 steps, for a later study to compare its
own with: study_answers.py). Every stage resumes: a rerun skips the scores already written (OUT/scores/)
and the timing (OUT/timing.json) whose settings match. ``jobs`` > 1 trains that many runs at once, each in
its own process (the numbers do not change).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from ..inference import load_model
from ..objectives import OBJECTIVES
from ..outputs import write_json
from ..training import Trainer
from .budget_growth import keeps_growing, seed_methods
from .jobs import run_jobs
from .study_answers import ComparedWith, answers_of, write_answers
from .study_figures import draw_figures
from .study_plan import (
    TEACHER,
    Run,
    StudyPlan,
    best_without_teacher,
    full_plan,
    grown,
    main_run,
    main_runs,
    second_stage_runs,
    seed_stages,
    teacher_of,
)
from .study_report import write_study_report
from .study_runs import RunJob, run_config, run_dir, train_and_score
from .study_scores import Scores, StudyResults
from .timing import interleaved_step_times, median_ratio

__all__ = ["StudyPlan", "StudyResults", "full_plan", "run_plan", "run_study"]


def execute(out: Path, plan: StudyPlan, runs: list[Run], progress: bool, jobs: int) -> list[dict[str, Any]]:
    """Train and score ``runs`` (their teacher runs first, added when missing); returns the rows of ``runs``."""
    todo = list(dict.fromkeys(runs))
    for run in list(todo):
        teacher = teacher_of(run, plan)
        if teacher is not None and teacher not in todo:
            todo.insert(0, teacher)
    count = {"done": 0}
    t0 = time.perf_counter()

    def report(job: RunJob, rows: list[dict[str, Any]]) -> None:
        count["done"] += 1
        if progress:
            print(
                f"[{count['done']}/{len(todo)}] {job.run.name} ({(time.perf_counter() - t0) / 60:.1f} min)",
                file=sys.stderr,
                flush=True,
            )

    inline_bars = progress and jobs <= 1
    results = run_jobs(
        [RunJob(out, plan, r, progress=inline_bars) for r in todo],
        key=lambda j: j.run.name,
        needs=lambda j: [t.name] if (t := teacher_of(j.run, plan)) is not None else [],
        work=train_and_score,
        workers=jobs,
        threads=max(1, torch.get_num_threads() // max(jobs, 1)),
        on_done=report,
    )
    asked = {r.name for r in runs}  # not the teacher runs added here: the caller has their rows already
    return [row for name in results if name in asked for row in results[name]]


def grow_until_settled(out: Path, plan: StudyPlan, progress: bool, jobs: int) -> tuple[StudyPlan, Scores]:
    """The main runs, their budget doubled while the answer moves (up to ``plan.max_steps``); a largest budget
    that may still double is scored at the few step counts of the smaller budgets, the others added once it
    is final. Returns the final plan and the scores."""
    while True:
        may_grow = plan.can_double()
        scores = Scores(execute(out, replace(plan, settling=may_grow), main_runs(plan), progress, jobs))
        if not keeps_growing(scores, plan):
            break
        plan = grown(plan)
        if progress:
            print(f"the answer still moves: doubling the budget to {plan.steps} steps", file=sys.stderr, flush=True)
    if may_grow:  # final now: every step count at the largest budget
        scores = Scores(execute(out, plan, main_runs(plan), progress, jobs))
    return plan, scores


def more_seeds(out: Path, plan: StudyPlan, methods: tuple[str, ...], progress: bool, jobs: int) -> list[dict[str, Any]]:
    """The runs of ``methods`` with ``plan.leader_seeds``, trained through the plan's stages as the first seeds
    were (a distillation run's teacher at each stage's budget); returns their rows."""
    rows: list[dict[str, Any]] = []
    for stage, runs in seed_stages(plan, methods):
        rows = execute(out, stage, runs, progress, jobs)
    return rows


def measure_costs(out: Path, plan: StudyPlan) -> dict[str, dict[str, float]]:
    """Step time of every method relative to flow matching on digits, steps alternated in one process
    (cached in OUT/timing.json), with each objective's cost model."""
    file = out / "timing.json"
    key = {"repeats": plan.timing_repeats, "methods": list(plan.methods), "threads": torch.get_num_threads()}
    if file.exists() and json.loads(file.read_text()).get("settings") == key:
        return json.loads(file.read_text())["costs"]
    t0 = time.perf_counter()
    runs = {m: main_run(plan, m) for m in plan.methods}
    extra = ("logger=none", "eval_every=0")
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            m: Trainer(run_config(out, plan, run, plan.steps, extra), f"{tmp}/{m}", progress=False)
            for m, run in runs.items()
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
    write_json(file, {"settings": key, "costs": costs, "seconds": time.perf_counter() - t0})
    return costs


def run_plan(out: Path, plan: StudyPlan, progress: bool = True, jobs: int = 1) -> StudyResults:
    """Every stage of ``plan`` into ``out`` (skipping those already done): the runs and their scores, the
    second stage (ablation, fine-tuning), the step costs and the figures; what the reports read."""
    t_start = time.perf_counter()
    plan, scores = grow_until_settled(out, plan, progress, jobs)
    if plan.leader_seeds:
        scores.rows += more_seeds(out, plan, seed_methods(scores, plan), progress, jobs)
    digits = "digits" in plan.domains
    winner = None
    if digits and (plan.ablation or plan.finetune):
        at_1 = {m: scores.mean("fd_digits", "digits", m, plan.main_recipe, plan.steps, 1).mean for m in plan.methods}
        winner = best_without_teacher(at_1)
        scores.rows += execute(out, plan, second_stage_runs(plan, winner), progress, jobs)
    costs = measure_costs(out, plan) if digits else {}
    models = {m: load_model(run_dir(out, main_run(plan, m)), "cpu") for m in plan.methods} if digits else {}
    return StudyResults(
        out=out,
        plan=plan,
        scores=scores,
        costs=costs,
        winner=winner,
        figures=draw_figures(out, plan, scores, costs, models),
        params=sum(p.numel() for p in next(iter(models.values())).model.parameters()) if models else 0,
        config=run_config(out, plan, main_run(plan, TEACHER), plan.steps) if models else None,
        seconds={
            "timing": json.loads((out / "timing.json").read_text()).get("seconds", 0.0) if costs else 0.0,
            "this call": time.perf_counter() - t_start,
        },
        machine={"threads": torch.get_num_threads(), "jobs": jobs},
    )


def run_study(
    out: Path, plan: StudyPlan, progress: bool = True, jobs: int = 1, compare_with: ComparedWith | None = None
) -> Path:
    """Run every stage (skipping those already done) and write OUT/report.md (its short answer against
    ``compare_with``, another study's answers, when given) and OUT/answers.json; returns the report's path."""
    unknown = [m for m in plan.methods if m not in OBJECTIVES]
    if unknown or TEACHER not in plan.methods:
        raise ValueError(f"methods must include {TEACHER!r} and be registered objectives; unknown: {unknown}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "plan.json", asdict(plan))
    results = run_plan(out, plan, progress, jobs)
    write_answers(out, answers_of(results.scores, results.plan))  # the plan as grown: its largest budget
    return write_study_report(results, compare_with)
