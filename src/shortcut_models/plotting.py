"""Figures: metric against steps, and scatter plots of 2-D samples.

Figures are drawn with matplotlib's object interface (``matplotlib.figure.Figure``) and saved to files:
no screen is needed, and the user's pyplot state and backend are left alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .outputs import save_figure


def plot_metric_vs_steps(
    rows: list[dict[str, Any]],
    metric: str,
    out: Path,
    ylabel: str | None = None,
    names: dict[str, str] | None = None,
    log_y: bool = False,
) -> None:
    """One line per checkpoint (named by objective and step) on a log2 step axis; floor dashed.

    ``names`` maps an objective's registry name to the name shown (e.g. "flow" -> "flow matching");
    ``log_y`` puts the metric on a log axis.
    """
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    for ckpt in dict.fromkeys(r["checkpoint"] for r in rows):
        sel = sorted((r for r in rows if r["checkpoint"] == ckpt), key=lambda r: r["steps"])
        name = (names or {}).get(sel[0]["objective"], sel[0]["objective"])
        ax.plot(
            [r["steps"] for r in sel],
            [r[metric] for r in sel],
            marker="o",
            label=f"{name} (step {sel[0]['train_step']})",
        )
    floors = [r[f"{metric}_floor"] for r in rows if f"{metric}_floor" in r]
    if floors:
        ax.axhline(float(np.mean(floors)), color="gray", linestyle="--", label="data vs data")
    ax.set_xscale("log", base=2)
    if log_y:
        ax.set_yscale("log")
    ax.set_xticks(sorted({r["steps"] for r in rows}), [str(s) for s in sorted({r["steps"] for r in rows})])
    ax.set_xlabel("sampling steps")
    ax.set_ylabel(ylabel or metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out)


def scatter_2d(points: np.ndarray, out: Path, title: str = "", lim: float = 3.0) -> None:
    """Scatter plot of [N, 2] points."""
    fig = Figure(figsize=(4, 4), dpi=120)
    ax = fig.subplots()
    ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.5)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, out)


def plot_curves_vs_training_step(
    curves: dict[int, list[tuple[int, float]]], out: Path, ylabel: str, floor: float | None = None
) -> None:
    """A metric against the training step: one line per number of sampling steps (``curves[n]`` holds
    (training step, value) pairs), log scale, the data floor dashed when given."""
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    for n in sorted(curves):
        points = sorted(curves[n])
        ax.plot(*zip(*points), marker="o", label=f"{n} step{'s' if n > 1 else ''}")
    if floor is not None:
        ax.axhline(floor, color="gray", linestyle="--", label="data vs data")
    if all(v > 0 for points in curves.values() for _, v in points) and (floor is None or floor > 0):
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out)
