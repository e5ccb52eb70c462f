"""Evaluation during training: the metric curve of a run, at several step counts, on fixed noise.

Every ``eval_every`` training steps and at the last step, the EMA network generates ``eval_num``
samples per step count of ``eval_steps``, sample i always from the noise of index i under one seed
derived from the run's seed (the same noise at every evaluation, so the curve does not oscillate
with the draw). The metric is computed by the code of ``shortcut eval`` (:mod:`.at_steps`). One row
per (training step, sampling steps) goes to ``RUN/eval.csv``, TensorBoard and W&B (tags
``eval/<metric>/steps_<n>``), and ``RUN/eval.png`` plots the metric against the training step, one
line per step count, the data floor dashed where the metric has one.

The trainer calls an evaluator through its ``evaluator`` argument (training does not import this
package; :func:`shortcut_models.experiments.build_trainer` and ``shortcut train`` pass one):
``start`` when the run starts or resumes, ``due`` after every step, and the evaluator itself.

- Resuming: a resumed run recomputes the steps after its checkpoint, so the rows after the
  checkpoint's step are dropped at the start and computed again, identically. An evaluation runs
  before the checkpoint of its step is written, so every row up to the checkpoint is there.
- Several processes: each generates an interleaved share of the samples and the feature statistics
  are summed over processes, so the rows do not depend on the number of processes; rank 0 writes.
- Everything a metric needs is loaded by :meth:`TrainingEvaluator.from_config`, so a missing piece
  (reference statistics, Inception weights) stops the run at the start with one line.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from .. import seeding
from ..config import TrainConfig
from ..data import describe_source
from ..errors import UserError
from ..inference import LoadedModel
from ..loggers import RunLogger, drop_rows_after
from ..plotting import plot_curves_vs_training_step
from .at_steps import evaluate_images, evaluate_toy
from .image_metrics import ImageMetric, build_metric, default_metric, metric_key

SECTION = "eval"  # RunLogger section: RUN/eval.csv, tags eval/...
FILE = "eval.csv"
PLOT = "eval.png"
# Columns of RUN/eval.csv after "step" (the training step); the metric's own columns follow "cfg_scale".
LEADING = ("steps", "nfe", "num", "cfg_scale")
EXTRA = ("class_accuracy", "in_square", "in_square_data")


class TrainingEvaluator:
    """The metric of a run's EMA network at ``steps`` sampling steps, every ``every`` training steps.

    Build it with :meth:`from_config`. ``metric`` is None for 2-D data (sliced Wasserstein distance).
    """

    def __init__(
        self,
        run_dir: str | Path,
        every: int,
        last_step: int,
        steps: list[int],
        num: int,
        metric_name: str,
        metric: ImageMetric | None,
        seed: int,
        cfg_scale: float = 1.0,
        progress: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.every, self.last_step = int(every), int(last_step)
        self.steps, self.num = list(steps), int(num)
        self.metric_name, self.metric = metric_name, metric
        self.key = metric_key(metric_name)
        self.seed, self.cfg_scale = seed, float(cfg_scale)
        self.progress = progress  # a progress bar per step count (rank 0)
        self.start_step = 0
        self.count, self.seconds = 0, 0.0  # evaluations made and their wall time, this session

    @classmethod
    def from_config(
        cls, cfg: TrainConfig, run_dir: str | Path, device: torch.device | str = "cpu", progress: bool = False
    ) -> TrainingEvaluator:
        """The evaluator ``cfg``'s eval_* keys describe; loads the metric (UserError when a piece is missing)."""
        info = describe_source(cfg.data)
        is_image = len(info.shape) == 3
        name = default_metric(cfg.data, is_image) if cfg.eval_metric == "auto" else cfg.eval_metric
        try:
            metric = build_metric(
                name,
                cfg.data,
                is_image,
                cfg.eval_ref_stats or None,
                cfg.eval_inception_weights or None,
                device,
                dinov2_weights=cfg.eval_dinov2_weights or None,
            )
        except UserError as exc:
            raise UserError(
                f"evaluation during training (eval_every={cfg.eval_every}): {exc}; "
                "or set eval_every=0 to train without it"
            ) from None
        # a seed as `shortcut eval --seed` takes (32 bits; the random streams read no more of it)
        seed = seeding.derive_seed(cfg.seed, seeding.STREAMS["eval"]) & seeding.MAX_SEED
        return cls(
            run_dir,
            cfg.eval_every,
            cfg.steps,
            cfg.eval_steps,
            cfg.eval_num,
            name,
            metric,
            seed,
            cfg.eval_cfg_scale,
            progress,
        )

    @property
    def path(self) -> Path:
        return self.run_dir / FILE

    def start(self, step: int, is_main: bool) -> None:
        """The run starts (or resumes) at ``step``: rank 0 drops the rows of later training steps."""
        self.start_step = int(step)
        if is_main:
            drop_rows_after(self.path, step)

    def due(self, step: int) -> bool:
        """Whether training step ``step`` (just finished) is evaluated: every ``every`` steps and the last."""
        return step > self.start_step and (step % self.every == 0 or step == self.last_step)

    def __call__(self, model: LoadedModel, step: int, logger: RunLogger | None) -> list[dict[str, Any]]:
        """Evaluate ``model`` (every process); rank 0, which holds ``logger``, writes the rows and the plot."""
        if self.metric is None:
            rows = evaluate_toy(model, self.steps, self.num, seed=self.seed, progress=self.progress)
        else:
            rows = evaluate_images(
                model,
                self.steps,
                self.num,
                self.metric,
                seed=self.seed,
                cfg_scale=self.cfg_scale,
                progress=self.progress,
            )
        self.count += 1
        self.seconds += sum(r["seconds"] for r in rows)
        table = [self.curve_row(r) for r in rows]
        if logger is not None:
            values = [k for k in table[0] if k not in LEADING and k != "seconds"]
            logger.log_table(step, table, SECTION, by="steps", keys=values)
            self.plot()
        return table

    def curve_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """The columns of RUN/eval.csv from a row of :func:`evaluate_images` / :func:`evaluate_toy`."""
        out = {k: row[k] for k in LEADING}
        out[self.key] = row[self.key]
        if f"{self.key}_floor" in row:
            out[f"{self.key}_floor"] = row[f"{self.key}_floor"]
        out.update({k: row[k] for k in EXTRA if k in row})
        out["seconds"] = row["seconds"]
        return out

    def plot(self) -> Path:
        """RUN/eval.png from RUN/eval.csv: the metric against the training step, one line per step count."""
        rows = read_rows(self.path)
        curves: dict[int, list[tuple[int, float]]] = {}
        for row in rows:
            curves.setdefault(int(row["steps"]), []).append((int(row["step"]), float(row[self.key])))
        floors = [float(row[f"{self.key}_floor"]) for row in rows if row.get(f"{self.key}_floor")]
        floor = sum(floors) / len(floors) if floors else None
        out = self.run_dir / PLOT
        ylabel = f"{self.metric_name} ({self.num} samples)"
        plot_curves_vs_training_step(curves, out, ylabel=ylabel, floor=floor)
        return out

    def summary(self, wall_seconds: float) -> str:
        """One line: how many evaluations this session made and their share of ``wall_seconds``."""
        share = 100.0 * self.seconds / wall_seconds if wall_seconds > 0 else 0.0
        return (
            f"evaluation during training: {self.count} evaluation(s), {self.seconds:.1f} s of {wall_seconds:.1f} s "
            f"({share:.1f}%)"
        )


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of an eval.csv; a line cut short by a crash (missing columns) is dropped."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [row for row in csv.DictReader(fh) if _complete(row)]


def _complete(row: dict[str | None, str | None]) -> bool:
    if None in row or None in row.values():  # too many or too few values on the line
        return False
    try:
        int(row["step"]), int(row["steps"])
    except (KeyError, ValueError):
        return False
    return True
