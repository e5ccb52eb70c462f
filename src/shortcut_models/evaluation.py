"""Evaluate checkpoints at several step counts: generate, measure, tabulate, plot.

For 2-D toys the metric is the sliced Wasserstein distance (SWD) between K generated points and K
fresh data points, next to the data-vs-data floor (SWD between two independent data sets of K
points); for the checkerboard also the fraction of samples on filled squares.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .data import on_checkerboard
from .inference import LoadedModel
from .metrics.swd import sliced_wasserstein
from .sampling import step_schedule


def toy_reference(loaded: LoadedModel, num: int, seed: int):
    """Two independent data sets of ``num`` points: one to compare with, one for the floor."""
    ref, _ = loaded.source.reference(2 * num, seed)
    return ref[:num], ref[num:]


def evaluate_toy(loaded: LoadedModel, steps: list[int], num: int, seed: int = 0, progress: bool = True) -> list[dict[str, Any]]:
    """One row per step count: swd, swd_floor, (in_square, in_square_data), nfe, seconds."""
    ref, ref2 = toy_reference(loaded, num, seed)
    floor = sliced_wasserstein(ref, ref2)
    rows = []
    for n in tqdm(steps, desc=f"eval {loaded.label}", disable=not progress, leave=False):
        t0 = time.perf_counter()
        x = loaded.generate(num, n, seed=seed)
        seconds = time.perf_counter() - t0
        row = {"checkpoint": str(loaded.path), "objective": loaded.config.objective, "train_step": loaded.step,
               "steps": n, "nfe": len(step_schedule(n, loaded.config.max_steps)), "num": num,
               "swd": sliced_wasserstein(x, ref), "swd_floor": floor, "seconds": seconds}
        if loaded.config.data == "checkerboard":
            row["in_square"] = float(on_checkerboard(x).float().mean())
            row["in_square_data"] = float(on_checkerboard(ref).float().mean())
        rows.append(row)
    return rows


def write_results(rows: list[dict[str, Any]], out_dir: Path, metric: str) -> None:
    """metrics.json, metrics.csv and metric_vs_steps.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps({"metric": metric, "rows": rows}, indent=2) + "\n")
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(out_dir / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    from .plotting import plot_metric_vs_steps

    plot_metric_vs_steps(rows, metric, out_dir / "metric_vs_steps.png")


def format_table(rows: list[dict[str, Any]], metric: str) -> str:
    """A plain-text table: one line per (checkpoint, steps)."""
    extra = [k for k in ("in_square",) if any(k in r for r in rows)]
    head = ["model", "steps", "nfe", metric, f"{metric}_floor", *extra, "seconds"]
    lines = ["  ".join(f"{h:>14}" for h in head)]
    for r in rows:
        name = f"{r['objective']}@{r['train_step']}"
        vals = [name, r["steps"], r["nfe"], f"{r[metric]:.4f}", f"{r[metric + '_floor']:.4f}",
                *[f"{r[k]:.4f}" if k in r else "-" for k in extra], f"{r['seconds']:.2f}"]
        lines.append("  ".join(f"{v:>14}" for v in vals))
    return "\n".join(lines)
