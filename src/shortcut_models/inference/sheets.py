"""Sample sheets: the same noise rendered at several step counts, side by side.

Images: one PNG grid per step count (``steps_001.png``...) and ``sheet.png`` with every step count
side by side; for class-conditional models each row is one class (row labels name it). 2-D data:
one scatter plot per step count.

With ``progress``, a line on stderr says what is written where, and a progress bar counts the
network passes (one per sampling step and batch), so a slow sheet (a large latent model on a CPU)
shows that it advances. The bar only observes the network (a forward hook): samples are unchanged.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..images import save_grid, save_sheet
from ..plotting import scatter_2d
from .model import LoadedModel, check_finite

GRID_STEPS = (1, 2, 4, 8, 16, 32, 128)
SCATTER_SAMPLES = 2000  # points per scatter plot of 2-D data
BATCH = 1024  # samples per network pass


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
    progress: bool = False,
) -> Path:
    """Render ``steps`` sample grids from one fixed noise set into ``out_dir``; returns the sheet path
    (the directory for 2-D data). ``progress``: say on stderr what is written and show a progress bar."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = [s for s in steps if s <= loaded.max_steps]
    if not loaded.is_image:
        with _progress(loaded, out_dir, steps, SCATTER_SAMPLES, progress) as bar:
            for n in steps:
                bar.set_postfix_str(f"{n} step(s)")
                x = loaded.generate(SCATTER_SAMPLES, n, seed=seed, batch_size=BATCH)
                check_finite(x, f"samples of {loaded.label} at {n} step(s)")
                scatter_2d(x.numpy(), out_dir / f"steps_{n:03d}.png", title=f"{loaded.label}, {n} step(s)")
        return out_dir
    labels, rows, row_names = grid_labels(loaded.num_classes, per_row)
    num = rows * per_row
    grids = []
    with _progress(loaded, out_dir, steps, num, progress) as bar:
        for n in steps:
            bar.set_postfix_str(f"{n} step(s)")
            x = loaded.generate(num, n, seed=seed, labels=labels, cfg_scale=cfg_scale, batch_size=BATCH)
            check_finite(x, f"samples of {loaded.label} at {n} step(s)")
            x = x.clamp(-1, 1)
            save_grid(x, out_dir / f"steps_{n:03d}.png", rows)
            grids.append((f"{n} step{'s' if n > 1 else ''}", x))
    sheet = out_dir / "sheet.png"
    guide = f", cfg {cfg_scale:g}" if cfg_scale != 1.0 else ""
    save_sheet(grids, sheet, rows, row_names, title=f"{loaded.label}{guide}")
    return sheet


@contextlib.contextmanager
def _progress(loaded: LoadedModel, out_dir: Path, steps: list[int], num: int, enabled: bool) -> Iterator[tqdm]:
    """A bar over the network passes of the sheets (every sampling step of every batch; n steps take n
    passes per batch), advanced by a forward hook on the network; nothing at all when not ``enabled``."""
    if enabled:
        counts = ", ".join(str(n) for n in steps)
        tqdm.write(
            f"writing sample sheets of {loaded.label} ({num} samples at {counts} step(s)) to {out_dir}",
            file=sys.stderr,
        )
    bar = tqdm(
        total=sum(steps) * -(-num // BATCH),
        desc="sample sheets",
        unit="pass",
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=1.0,
        leave=False,
        file=sys.stderr,
    )

    def count(*_) -> None:  # returns None: the network's output is left as it is
        bar.update(1)

    hook = loaded.model.register_forward_hook(count) if enabled else None
    try:
        yield bar
    finally:
        if hook is not None:
            hook.remove()
        bar.close()
