"""The study's figures: FD against sampling steps, FD against training budget and training time, the
checkerboard's distance against its budget, sample grids, FD during training."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import matplotlib
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..evaluation.during_training import FILE as EVAL_FILE
from ..images import tile, to_uint8
from ..inference import LoadedModel
from ..objectives import OBJECTIVES
from ..outputs import save_figure
from .report import steps_label
from .study_plan import TEACHER, StudyPlan, main_run, method_title
from .study_runs import run_dir
from .study_scores import Scores


def style(method: str) -> dict:
    """One colour and marker per method, by its place in the registry (more methods than the default ten colours)."""
    i = list(OBJECTIVES).index(method)
    return {"color": matplotlib.colormaps["tab20"](2 * i % 20 + (2 * i // 20)), "marker": "os^Dv"[i % 5]}


def fd_figure(path: Path, scores: Scores, plan: StudyPlan) -> Path:
    """Mean FD over seeds (bars: 95% intervals) against sampling steps, every method under the main recipe (its own
    in the study)."""
    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()
    recipe = plan.main_recipe
    for m in plan.methods:
        steps = [n for n in plan.eval_steps if scores.has("digits", m, recipe, plan.steps, n)]
        if not steps:
            continue
        means = [scores.mean("fd_digits", "digits", m, recipe, plan.steps, n) for n in steps]
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
    """FD at 1 and at 4 sampling steps against training steps, and FD at 1 step against training time.

    Training time is steps times the method's median step time from the side-by-side timing (``costs``,
    :func:`~.study.measure_costs`), so the load of the machine while a run trained does not move it; a
    distillation method's time includes its flow-matching teacher's run (``StudyPlan.teacher_steps``)."""
    fig = Figure(figsize=(17, 4.5), dpi=120)
    axes = fig.subplots(1, 3)
    budgets = plan.all_budgets()
    for m in plan.methods:
        _budget_curves(axes, scores, plan, costs, m)
    for ax, title in zip(axes, ("1 step", "4 steps", "1 step, against training time")):
        if ax.has_data():  # a step count not scored leaves its panel empty
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_ylabel("FD (digits features)")
        ax.grid(alpha=0.3)
    for ax in axes[:2]:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(budgets), [str(b) for b in budgets])
        ax.set_xlabel("training steps")
    axes[2].set_xscale("log")
    axes[2].xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # plain numbers: 0.2, 0.5, 1, 2 ...
    axes[2].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes[2].xaxis.set_minor_formatter(NullFormatter())
    axes[2].set_xlabel("training minutes at the measured step time\n(a distillation method's teacher included)")
    _legend_right(fig, axes[0])
    save_figure(fig, path)
    return path


def _legend_right(fig: Figure, ax) -> None:
    """One legend for the whole figure, right of its panels (inside a panel it covers curves)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.tight_layout(rect=(0.0, 0.0, 0.86, 1.0))
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.86, 0.5), fontsize=7, frameon=False)


def _budget_curves(axes, scores: Scores, plan: StudyPlan, costs: dict[str, dict[str, float]], m: str) -> None:
    """One method's curves on the three panels of :func:`budget_figure`."""
    budgets, recipe = plan.all_budgets(), plan.main_recipe
    for ax, n in zip(axes[:2], (1, 4)):
        have = [b for b in budgets if scores.has("digits", m, recipe, b, n)]
        means = [scores.mean("fd_digits", "digits", m, recipe, b, n) for b in have]
        ax.errorbar(
            have, [s.mean for s in means], yerr=[_bar(s) for s in means], capsize=2, label=method_title(m), **style(m)
        )
    if m not in costs:
        return
    have = [b for b in budgets if scores.has("digits", m, recipe, b, 1)]
    minutes = [training_minutes(costs, m, b, plan.teacher_steps(b)) for b in have]
    fd = [scores.mean("fd_digits", "digits", m, recipe, b, 1).mean for b in have]
    axes[2].plot(minutes, fd, label=method_title(m), **style(m))


def toy_budget_figure(path: Path, scores: Scores, plan: StudyPlan) -> Path:
    """The checkerboard's sliced Wasserstein distance at 1 and at 4 sampling steps against its training steps,
    every method under the main recipe (bars: 95% intervals over seeds)."""
    fig = Figure(figsize=(12, 4.5), dpi=120)
    axes = fig.subplots(1, 2)
    budgets, recipe = plan.domain_budgets("checkerboard"), plan.main_recipe
    for ax, n in zip(axes, (1, 4)):
        for m in plan.methods:
            have = [b for b in budgets if scores.has("checkerboard", m, recipe, b, n)]
            means = [scores.mean("swd", "checkerboard", m, recipe, b, n) for b in have]
            ax.errorbar(
                have,
                [s.mean for s in means],
                yerr=[_bar(s) for s in means],
                capsize=2,
                label=method_title(m),
                **style(m),
            )
        if ax.has_data():
            ax.set_yscale("log")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(budgets), [str(b) for b in budgets])
        ax.set_title(f"checkerboard, {steps_label(n)}")
        ax.set_xlabel("training steps")
        ax.set_ylabel("sliced Wasserstein distance")
        ax.grid(alpha=0.3)
    _legend_right(fig, axes[1])
    save_figure(fig, path)
    return path


def training_minutes(costs: dict[str, dict[str, float]], method: str, steps: int, teacher_steps: int) -> float:
    """Minutes ``steps`` training steps of ``method`` take at its measured step time, plus its teacher's
    ``teacher_steps`` flow-matching steps when it distils one."""
    teacher = teacher_steps * costs[TEACHER]["ms"] if OBJECTIVES[method].teacher_run else 0.0
    return (steps * costs[method]["ms"] + teacher) / 60e3


def study_grids(path: Path, plan: StudyPlan, models: dict[str, LoadedModel]) -> Path:
    """One row per method (first seed, main recipe), one column per step count of the grid, from the same 64
    noise vectors."""
    images = [
        [model.generate(64, n, seed=plan.sample_seed + 2).clamp(-1, 1) for n in plan.grid_steps]
        for model in models.values()
    ]
    fig = grid_figure(images, [method_title(m) for m in models], [steps_label(n) for n in plan.grid_steps])
    save_figure(fig, path)
    return path


GRID_DPI = 150
CELL_PX = 150  # about this many pixels per panel: a panel's tile is enlarged by a whole factor
GAP = 0.08  # inches between panels and around the labels
LABEL_WIDTH = 20  # characters per line of a row label (longer names wrap)


def grid_figure(
    images: list[list[torch.Tensor]], rows: list[str], columns: list[str], rows_per_tile: int = 8
) -> Figure:
    """A matrix of sample tiles: ``images[r][c]`` (float [-1, 1] NCHW) tiled in ``rows_per_tile`` rows, each
    row labelled at the left with ``rows[r]``, each column titled at the top with ``columns[c]``.

    Every size is set in inches, so the figure grows by one panel pitch per row and per column, and the
    labels get the room their measured size needs (nothing overlaps, whatever the names)."""
    if len(images) != len(rows) or any(len(row) != len(columns) for row in images):
        raise ValueError(f"grid_figure needs {len(rows)} rows of {len(columns)} image sets each")
    tiles = [[tile(to_uint8(x), rows_per_tile) for x in row] for row in images]
    h, w = tiles[0][0].shape[:2]
    scale = max(1, round(CELL_PX / w))
    cell_w, cell_h = w * scale / GRID_DPI, h * scale / GRID_DPI
    labels = [textwrap.fill(r, LABEL_WIDTH, break_on_hyphens=False) for r in rows]
    label_w, _ = _text_inches(labels, 9)
    _, title_h = _text_inches(columns, 9)
    left, top = 2 * GAP + label_w, 2 * GAP + title_h
    width = left + len(columns) * (cell_w + GAP) + GAP
    height = top + len(rows) * (cell_h + GAP) + GAP
    fig = Figure(figsize=(width, height), dpi=GRID_DPI)
    for r, row in enumerate(tiles):
        y = height - top - r * (cell_h + GAP) - cell_h  # the panel's bottom edge, inches from the bottom
        fig.text((left - GAP) / width, (y + cell_h / 2) / height, labels[r], ha="right", va="center", fontsize=9)
        for c, img in enumerate(row):
            ax = fig.add_axes(((left + c * (cell_w + GAP)) / width, y / height, cell_w / width, cell_h / height))
            ax.imshow(
                img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", interpolation="nearest", vmin=0, vmax=255
            )
            ax.set_axis_off()
    for c, title in enumerate(columns):
        x = (left + c * (cell_w + GAP) + cell_w / 2) / width
        fig.text(x, (height - top + GAP) / height, title, ha="center", va="bottom", fontsize=9)
    return fig


def _text_inches(texts: list[str], fontsize: float) -> tuple[float, float]:
    """Width and height (inches) of the largest of ``texts`` as the renderer draws them."""
    fig = Figure(dpi=GRID_DPI)
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [fig.text(0, 0, t, fontsize=fontsize).get_window_extent(renderer) for t in texts]
    return max(b.width for b in boxes) / GRID_DPI, max(b.height for b in boxes) / GRID_DPI


def tracking_figure(path: Path, out: Path, plan: StudyPlan) -> Path:
    """FD against training step at each step count the evaluation during training samples (RUN/eval.csv of
    each method's first run under the main recipe)."""
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
    """Every figure the plan has the scores for: {"fd", "budget", "toy_budget", "grids", "tracking"} (None: not
    drawn)."""
    digits = "digits" in plan.domains
    toy = "checkerboard" in plan.domains and len(plan.domain_budgets("checkerboard")) > 1
    return {
        "fd": fd_figure(out / "fd_vs_steps.png", scores, plan) if digits else None,
        "budget": budget_figure(out / "fd_vs_budget.png", scores, plan, costs) if plan.budgets else None,
        "toy_budget": toy_budget_figure(out / "swd_vs_budget.png", scores, plan) if toy else None,
        "grids": study_grids(out / "grids.png", plan, models) if models else None,
        "tracking": tracking_figure(out / "fd_vs_training_step.png", out, plan) if plan.tracking else None,
    }
