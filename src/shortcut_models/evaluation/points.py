"""Evaluate a model of a 2-D toy (the checkerboard) at several step counts, with no feature network.

The score is the sliced Wasserstein distance (:mod:`..metrics.swd`) between ``num`` generated points
and ``num`` fresh points of the toy's known density. The fresh points come from the data source's
reference stream under a fixed ``reference_seed``: a stream the trainer never draws its batches from
(those come from the data stream keyed by the training seed and the step), so the reference is not
made of training points, and it is the same set whatever model or sampling seed is evaluated.
The floor, ``swd_floor``, is the same distance between two independent fresh sets of ``num`` points:
what a perfect model scores, and the noise level of the comparison.

Sampling noise depends only on ``seed`` (sample i starts from the noise of index i), so every model
evaluated with the same ``seed`` starts from the same points. Conventions: t = 0 noise, t = 1 data.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..data import build_source, on_checkerboard
from ..data.toy2d import TOYS
from ..errors import UserError
from ..inference import LoadedModel, check_finite, generate_shared
from ..metrics.swd import sliced_wasserstein
from ..sampling import step_schedule

REFERENCE_SEED = 20_231_123  # the reference sets of every evaluation (any fixed seed: its stream is not trained on)


def reference_points(data: str, num: int, reference_seed: int = REFERENCE_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent sets of ``num`` fresh points of toy ``data``: the reference and the floor's partner."""
    if data not in TOYS:
        raise UserError(f"point evaluation needs a 2-D toy model, not data {data!r}; toys: {', '.join(TOYS)}")
    points, _ = build_source(data).reference(2 * num, reference_seed)
    return points[:num], points[num:]


def evaluate_points(
    loaded: LoadedModel,
    steps: list[int],
    num: int,
    seed: int = 0,
    reference_seed: int = REFERENCE_SEED,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One row per step count: ``objective``, ``steps``, ``swd``, ``swd_floor``, ``on_board`` (the share
    of samples on the filled squares; checkerboard models only), ``nfe`` and ``seconds`` (sampling and
    scoring). ``num`` samples from the noise of ``seed``, against ``num`` fresh points of ``reference_seed``."""
    if num < 2:
        raise UserError(f"point evaluation needs num >= 2 samples, got {num}")
    reference, other = reference_points(loaded.spec.data, num, reference_seed)
    floor = sliced_wasserstein(reference, other)
    rows = []
    for n in tqdm(steps, desc=f"eval {loaded.label}", disable=not (progress and distributed.is_main()), leave=False):
        t0 = time.perf_counter()
        x = generate_shared(loaded, num, n, seed=seed, everyone=True)
        check_finite(x, f"samples of {loaded.label} at {n} step(s)")
        row: dict[str, Any] = {
            "objective": loaded.spec.objective,
            "steps": n,
            "swd": sliced_wasserstein(x, reference),
            "swd_floor": floor,
        }
        if loaded.spec.data == "checkerboard":
            row["on_board"] = float(on_checkerboard(x).float().mean())
        row["nfe"] = len(step_schedule(n, loaded.max_steps)) * loaded.passes_per_step(1.0)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    return rows
