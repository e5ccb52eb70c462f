"""Evaluate a model at several step counts: generate, measure, tabulate, plot.

Under torchrun every process generates an interleaved share of the K samples (per-sample seeds: the
same samples as one process); feature statistics are summed over processes in float64 and class
accuracy counts likewise, so the numbers match a single process up to rounding.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed
from ..data import on_checkerboard
from ..images import to_uint8
from ..inference import LoadedModel, check_finite, non_finite_rows, sample_blocks
from ..metrics.frechet import FeatureStats, frechet_distance_from_stats
from ..metrics.inception_score import inception_score
from ..metrics.kernel_distance import kernel_distance
from ..metrics.precision_recall import precision_recall
from ..objectives import OBJECTIVES
from ..outputs import save_npz, write_json, write_with
from ..plotting import plot_metric_vs_steps
from ..sampling import step_schedule
from .image_metrics import FEATURE_MEASURES, ImageMetric, metric_key, nn1_measures, reduce_feature_stats
from .points import evaluate_points, reference_points


def _row(loaded: LoadedModel, steps: int, num: int, cfg_scale: float) -> dict[str, Any]:
    nfe = len(step_schedule(steps, loaded.max_steps)) * loaded.passes_per_step(cfg_scale)
    return {
        "checkpoint": str(loaded.path),
        "objective": loaded.spec.objective,
        "train_step": loaded.step,
        "steps": steps,
        "nfe": nfe,
        "num": num,
        "cfg_scale": cfg_scale,
        **({"sampler": loaded.sampler} if loaded.sampler != "euler" else {}),  # the default sampler goes unsaid
    }


def evaluate_toy(
    loaded: LoadedModel, steps: list[int], num: int, seed: int = 0, progress: bool = True
) -> list[dict[str, Any]]:
    """One row per step count: swd, swd_floor, (in_square, in_square_data), nfe, seconds, as `shortcut eval`
    writes them: the scores of :func:`.points.evaluate_points` against the reference drawn with ``seed``."""
    rows = []
    data_share = None  # the reference's share on the board, the same at every step count
    for scores in evaluate_points(loaded, steps, num, seed=seed, reference_seed=seed, progress=progress):
        row = {**_row(loaded, scores["steps"], num, 1.0)}
        row.update((k, scores[k]) for k in ("seconds", "swd", "swd_floor"))
        if "on_board" in scores:
            if data_share is None:
                data_share = float(on_checkerboard(reference_points(loaded.spec.data, num, seed)[0]).float().mean())
            row["in_square"], row["in_square_data"] = scores["on_board"], data_share
        rows.append(row)
    return rows


def evaluate_images(
    loaded: LoadedModel,
    steps: list[int],
    num: int,
    metric: ImageMetric,
    seed: int = 0,
    cfg_scale: float = 1.0,
    batch_size: int = 500,
    save_dir: Path | None = None,
    progress: bool = True,
    on_features: Callable[[int, torch.Tensor], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per step count: the metric (and floor), class accuracy, the set measures requested
    (``metric.extras``: is, kid, prc, nn1), nfe, seconds. Every measure is of the same K samples.

    ``on_features(steps, features)`` receives the metric's features of each block of this process's
    samples (e.g. to keep them for precision and recall).
    """
    labels = loaded.balanced_labels(num)
    key = metric_key(metric.name)
    rank, world, main = distributed.rank(), distributed.world_size(), distributed.is_main()
    rows = []
    for n in steps:
        stats, correct, non_finite = FeatureStats(), 0, 0
        kept = [] if save_dir is not None else None
        every_feature: list[torch.Tensor] = []  # all samples' features (and logits), for the set measures
        every_logit: list[torch.Tensor] = []
        every_image: list[torch.Tensor] = []  # all samples (nn1 compares pixels)
        t0 = time.perf_counter()
        bar = tqdm(
            total=num, desc=f"eval {loaded.label} {n} step(s)", unit="img", disable=not (progress and main), leave=False
        )
        for indices, size in sample_blocks(num, batch_size, rank, world):
            images = loaded.decode(loaded.generate_indices(indices, n, seed, labels, cfg_scale))
            valid = indices < num  # the last block's padding rows are dropped
            non_finite += int((valid & non_finite_rows(images).cpu()).sum())
            images = torch.nan_to_num(images, nan=0.0).clamp(-1, 1)  # reported after the loop (check_finite)
            features, logits = metric.features_and_logits(images)
            if bool(valid.any()):
                mask = valid.to(images.device)
                stats.update(features[mask])
                if on_features is not None:
                    on_features(n, features[mask])
                if labels is not None and metric.classifier is not None:
                    pred = metric.classifier(images[mask]).argmax(dim=1).cpu()
                    correct += int((pred == labels[indices[valid]]).sum())
            if set(FEATURE_MEASURES) & set(metric.extras):
                _collect(every_feature, features, size)
                if logits is not None:
                    _collect(every_logit, logits, size)
            if "nn1" in metric.extras:
                _collect(every_image, images, size)
            if kept is not None:
                merged = distributed.gather_interleaved(images)
                if merged is not None:
                    kept.append(merged[:size].cpu())
            bar.update(size)
        bar.close()
        stats = reduce_feature_stats(stats)
        correct, non_finite = distributed.all_reduce(torch.tensor([correct, non_finite], dtype=torch.int64)).tolist()
        check_finite(images, f"samples of {loaded.label} at {n} step(s)", non_finite, num)
        row = {
            **_row(loaded, n, num, cfg_scale),
            "seconds": time.perf_counter() - t0,
            key: frechet_distance_from_stats(stats, metric.reference),
        }
        if metric.floor is not None:
            row[f"{key}_floor"] = metric.floor
        if labels is not None and metric.classifier is not None:
            row["class_accuracy"] = correct / num
        if metric.extras and main:
            row.update(_set_measures(metric, every_feature, every_logit, every_image))
        if kept is not None and main:
            y = labels.numpy() if labels is not None else np.full(num, loaded.num_classes, dtype=np.int64)
            out = save_dir / f"{loaded.spec.objective}-{loaded.step}-steps{n:03d}.npz"
            save_npz(out, arr_0=to_uint8(torch.cat(kept)), labels=y)
            row["samples_file"] = str(out)
        rows.append(row)
    return rows


def _collect(store: list[torch.Tensor], rows: torch.Tensor, size: int) -> None:
    """Keep (on rank 0, on the CPU) the first ``size`` rows of a block gathered from every process."""
    merged = distributed.gather_interleaved(rows)
    if merged is not None:
        store.append(merged[:size].float().cpu())


def _set_measures(
    metric: ImageMetric, features: list[torch.Tensor], logits: list[torch.Tensor], images: list[torch.Tensor]
) -> dict[str, float]:
    """is / is_std, kid / kid_std, precision / recall, nn1_* of the whole sample set."""
    out: dict[str, float] = {}
    samples = torch.cat(features) if features else None
    reference = None if metric.reference.features is None else torch.from_numpy(metric.reference.features)
    if "is" in metric.extras:
        out["is"], out["is_std"] = inception_score(torch.cat(logits), splits=min(10, samples.shape[0]))
    if "kid" in metric.extras:
        out["kid"], out["kid_std"] = kernel_distance(samples, reference)
    if "prc" in metric.extras:
        out["precision"], out["recall"] = precision_recall(samples, reference)
    if "nn1" in metric.extras:
        out.update(nn1_measures(torch.cat(images), metric))
    return out


def write_results(rows: list[dict[str, Any]], out_dir: Path, metric: str) -> None:
    """metrics.json, metrics.csv and metric_vs_steps.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", {"metric": metric, "rows": rows})
    fields = list(dict.fromkeys(k for row in rows for k in row))

    def write_csv(fh) -> None:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

    write_with(out_dir / "metrics.csv", write_csv, binary=False)
    names = {name: cls.title for name, cls in OBJECTIVES.items()}
    plot_metric_vs_steps(rows, metric_key(metric), out_dir / "metric_vs_steps.png", ylabel=metric, names=names)


def format_table(rows: list[dict[str, Any]], metric: str) -> str:
    """A plain-text table: one line per (checkpoint, steps)."""
    key = metric_key(metric)
    optional = (f"{key}_floor", "in_square", "class_accuracy", "is", "kid", "precision", "recall")
    optional += ("nn1_accuracy", "nn1_accuracy_floor")
    extra = [k for k in optional if any(k in r for r in rows)]
    head = ["model", "steps", "nfe", key, *extra, "seconds"]
    lines = ["  ".join(f"{h:>16}" for h in head)]
    for r in rows:
        vals = [
            f"{r['objective']}@{r['train_step']}" + (f" {r['sampler']}" if "sampler" in r else ""),
            r["steps"],
            r["nfe"],
            f"{r[key]:.4f}",
            *[f"{r[k]:.4f}" if k in r else "-" for k in extra],
            f"{r['seconds']:.2f}",
        ]
        lines.append("  ".join(f"{v:>16}" for v in vals))
    return "\n".join(lines)
