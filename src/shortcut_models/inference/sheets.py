"""Sample sheets: the same noise rendered at several step counts, side by side.

Images: one PNG grid per step count (``steps_001.png``...) and ``sheet.png`` with every step count
side by side; for class-conditional models each row is one class (row labels name it). 2-D data:
one scatter plot per step count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..images import save_grid, save_sheet
from ..plotting import scatter_2d
from .model import LoadedModel, check_finite

GRID_STEPS = (1, 2, 4, 8, 16, 32, 128)


def grid_labels(num_classes: int, per_row: int) -> tuple[torch.Tensor | None, int, list[str] | None]:
    """Labels for a grid (one class per row, at most 10 rows), its row count and row names."""
    if num_classes == 0:
        return None, 8, None
    rows = min(num_classes, 10)
    labels = torch.arange(rows).repeat_interleave(per_row)
    return labels, rows, [f"class {c}" for c in range(rows)]


def write_sample_sheets(
    loaded: LoadedModel,
    out_dir: Path,
    steps: Sequence[int] = GRID_STEPS,
    per_row: int = 10,
    seed: int = 0,
    cfg_scale: float = 1.0,
) -> Path:
    """Render ``steps`` sample grids from one fixed noise set into ``out_dir``; returns the sheet path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = [s for s in steps if s <= loaded.max_steps]
    if not loaded.is_image:
        for n in steps:
            x = loaded.generate(2000, n, seed=seed)
            check_finite(x, f"samples of {loaded.label} at {n} step(s)")
            scatter_2d(x.numpy(), out_dir / f"steps_{n:03d}.png", title=f"{loaded.label}, {n} step(s)")
        return out_dir
    labels, rows, row_names = grid_labels(loaded.num_classes, per_row)
    num = rows * per_row
    grids = []
    for n in steps:
        x = loaded.generate(num, n, seed=seed, labels=labels, cfg_scale=cfg_scale)
        check_finite(x, f"samples of {loaded.label} at {n} step(s)")
        x = x.clamp(-1, 1)
        save_grid(x, out_dir / f"steps_{n:03d}.png", rows)
        grids.append((f"{n} step{'s' if n > 1 else ''}", x))
    sheet = out_dir / "sheet.png"
    guide = f", cfg {cfg_scale:g}" if cfg_scale != 1.0 else ""
    save_sheet(grids, sheet, rows, row_names, title=f"{loaded.label}{guide}")
    return sheet
