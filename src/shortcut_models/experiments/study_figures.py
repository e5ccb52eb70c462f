"""The study's figures: FD against sampling steps, FD against training budget and training time, sample grids,
FD during training."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from ..evaluation.during_training import FILE as EVAL_FILE
from ..inference import LoadedModel
from ..inference.sheets import save_sheet
from ..objectives import OBJECTIVES
from ..outputs import save_figure
from .study_plan import TEACHER, StudyPlan, main_run, method_title
from .study_runs import run_dir
from .study_scores import Scores


def style(method: str) -> dict:
    """One colour and marker per method, by its place in the registry (more methods than the default ten colours)."""
    i = list(OBJECTIVES).index(method)
    return {"color": matplotlib.colormaps["tab20"](2 * i % 20 + (2 * i // 20)), "marker": "os^Dv"[i % 5]}


def fd_figure(path: Path, scores: Scores, plan: StudyPlan) -> Path:
    """Mean FD over seeds (bars: 95% intervals) against sampling steps, every method under its own recipe."""
    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()
    for m in plan.methods:
        steps = [n for n in plan.eval_steps if scores.has("digits", m, "own", plan.steps, n)]
        if not steps:
            continue
        means = [scores.mean("fd_digits", "digits", m, "own", plan.steps, n) for n in steps]
        ax.errorbar(
            steps, [s.mean for s in means], yerr=[_bar(s) for s in means], capsize=2, label=method_title(m), **style(m)
        )
    floor = scores.floor("fd_digits", "digits")
    if floor is not None:
        ax.axhline(floor, color="gray", linestyle="--", label="data vs data")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(plan.eval_steps), [str(n) for n in plan.eval_steps])
    ax.set_xlabel("sampling steps")
    ax.set_ylabel("FD (digits features)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def _bar(mean) -> float:
    return 0.0 if mean.half_width != mean.half_width else mean.half_width  # nan (one seed): no bar


def budget_figure(path: Path, scores: Scores, plan: StudyPlan, costs: dict[str, dict[str, float]]) -> Path:
    """FD at 1 and at 128 steps against training steps, and FD at 1 step against training time.

    Training time is steps times the method's median step time from the side-by-side timing (``costs``,
    :func:`~.study.measure_costs`), so the load of the machine while a run trained does not move it; a
    distillation method's time includes its flow-matching teacher's run at the largest budget."""
    fig = Figure(figsize=(15, 4.5), dpi=120)
    axes = fig.subplots(1, 3)
    budgets = plan.all_budgets()
    for m in plan.methods:
        _budget_curves(axes, scores, plan, costs, m)
    for ax, title in zip(axes, ("1 step", "128 steps", "1 step, against training time")):
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_ylabel("FD (digits features)")
        ax.grid(alpha=0.3)
    for ax in axes[:2]:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(budgets), [str(b) for b in budgets])
        ax.set_xlabel("training steps")
    axes[2].set_xscale("log")
    axes[2].set_xlabel("training minutes at the measured step time\n(a distillation method's teacher included)")
    axes[2].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def _budget_curves(axes, scores: Scores, plan: StudyPlan, costs: dict[str, dict[str, float]], m: str) -> None:
    """One method's curves on the three panels of :func:`budget_figure`."""
    budgets = plan.all_budgets()
    for ax, n in zip(axes[:2], (1, 128)):
        have = [b for b in budgets if scores.has("digits", m, "own", b, n)]
        means = [scores.mean("fd_digits", "digits", m, "own", b, n) for b in have]
        ax.errorbar(
            have, [s.mean for s in means], yerr=[_bar(s) for s in means], capsize=2, label=method_title(m), **style(m)
        )
    if m not in costs:
        return
    have = [b for b in budgets if scores.has("digits", m, "own", b, 1)]
    minutes = [training_minutes(costs, m, b, plan.steps) for b in have]
    fd = [scores.mean("fd_digits", "digits", m, "own", b, 1).mean for b in have]
    axes[2].plot(minutes, fd, label=method_title(m), **style(m))


def training_minutes(costs: dict[str, dict[str, float]], method: str, steps: int, teacher_steps: int) -> float:
    """Minutes ``steps`` training steps of ``method`` take at its measured step time, plus its teacher's
    ``teacher_steps`` flow-matching steps when it distils one."""
    teacher = teacher_steps * costs[TEACHER]["ms"] if OBJECTIVES[method].teacher_run else 0.0
    return (steps * costs[method]["ms"] + teacher) / 60e3


def study_grids(path: Path, plan: StudyPlan, models: dict[str, LoadedModel]) -> Path:
    """One row per method (first seed, own recipe) at the grid's step counts, from the same 64 noise vectors."""
    matrix = [
        [
            (
                f"{method_title(m)}, {n} step{'s' if n > 1 else ''}",
                model.generate(64, n, seed=plan.sample_seed + 2).clamp(-1, 1),
            )
            for n in plan.grid_steps
        ]
        for m, model in models.items()
    ]
    save_sheet(matrix, path, rows=8)
    return path


def tracking_figure(path: Path, out: Path, plan: StudyPlan) -> Path:
    """FD against training step at each step count the evaluation during training samples (RUN/eval.csv of
    each method's first run under its own recipe)."""
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    for m in plan.methods:
        rows = read_csv(run_dir(out, main_run(plan, m)) / EVAL_FILE)
        for n in sorted({int(r["steps"]) for r in rows}):
            sel = sorted((int(r["step"]), float(r["fd_digits"])) for r in rows if int(r["steps"]) == n)
            style_m = {**style(m), "linestyle": "--" if m == TEACHER else "-"}
            ax.plot(*zip(*sel), label=f"{method_title(m)}, {n} step{'s' if n > 1 else ''}", **style_m)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("FD (digits features, the same noise each time)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file; none when it does not exist."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def draw_figures(
    out: Path, plan: StudyPlan, scores: Scores, costs: dict[str, dict[str, float]], models: dict[str, LoadedModel]
) -> dict[str, Path | None]:
    """Every figure the plan has the scores for: {"fd", "budget", "grids", "tracking"} (None: not drawn)."""
    digits = "digits" in plan.domains
    return {
        "fd": fd_figure(out / "fd_vs_steps.png", scores, plan) if digits else None,
        "budget": budget_figure(out / "fd_vs_budget.png", scores, plan, costs) if plan.budgets else None,
        "grids": study_grids(out / "grids.png", plan, models) if models else None,
        "tracking": tracking_figure(out / "fd_vs_training_step.png", out, plan) if plan.tracking else None,
    }
