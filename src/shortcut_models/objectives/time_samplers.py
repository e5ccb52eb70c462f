"""Time samplers: where on the path (t = 0 noise, t = 1 data) the rows of a batch are trained (a recipe part).

A sampler draws one time per row, through :class:`~shortcut_models.seeding.RowDraws` (so several
processes draw as one), given ``cells``: the grid of the row's step, 1/d (an int for the whole
batch, or a tensor per row), and ``knobs``, the method's recipe (:class:`~.recipe.Recipe`: its
``time_sampler``, ``time_mu``, ``time_sigma``):

- ``grid``: t = i / cells with i uniform in {0, ..., cells - 1} (the authors' flow matching, shortcut
  and Table-1 baselines; flow-matching rows use cells = M = 128);
- ``uniform``: t ~ U[0, 1);
- ``logit-normal``: t = sigmoid(time_mu + time_sigma n), n ~ N(0, 1) (MeanFlow's; time_mu = 0.4 here is
  the paper's -0.4, whose time runs the other way).

Three uses, written once here: :func:`times` for rows without a step (flow matching), :func:`start_times`
for rows that step by d and need t + d <= 1 (a grid sampler lands there by itself; a continuous one is
scaled to [0, 1 - d]), and :func:`interval_times` for objectives trained on intervals (two draws,
sorted, a share of rows with d = 0 at the smaller draw, as MeanFlow).

Adding a sampler: one function below and one line in :data:`TIME_SAMPLERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..seeding import RowDraws

Cells = int | torch.Tensor


def grid(draws: RowDraws, cells: Cells, knobs: Any) -> torch.Tensor:  # noqa: ARG001
    """t = i / cells, i uniform in {0, ..., cells - 1}: one integer draw per row (cells an int), or one
    uniform draw u per row with i = floor(u cells) (cells a tensor, one grid per row)."""
    if isinstance(cells, int):
        return draws.integers(cells).float() / cells
    return (draws.uniform() * cells).floor() / cells


def uniform(draws: RowDraws, cells: Cells, knobs: Any) -> torch.Tensor:  # noqa: ARG001
    """t ~ U[0, 1)."""
    return draws.uniform()


def logit_normal(draws: RowDraws, cells: Cells, knobs: Any) -> torch.Tensor:  # noqa: ARG001
    """t = sigmoid(time_mu + time_sigma n), n ~ N(0, 1); computed in float64 and rounded to float32, so a
    row's time does not depend on how many rows the call holds (torch's float32 sigmoid may differ in the
    last bit between batch sizes, which made a process's rows differ from the single process's)."""
    return torch.sigmoid(knobs.time_mu + knobs.time_sigma * draws.normal((), torch.float64)).float()


@dataclass(frozen=True)
class TimeSampler:
    """A sampler and whether its times lie on the step's grid (so a row stepping by d stays in [0, 1])."""

    draw: Callable[[RowDraws, Cells, Any], torch.Tensor]
    on_grid: bool = False


TIME_SAMPLERS: dict[str, TimeSampler] = {
    "grid": TimeSampler(grid, on_grid=True),
    "uniform": TimeSampler(uniform),
    "logit-normal": TimeSampler(logit_normal),
}


def times(knobs: Any, draws: RowDraws, cells: int) -> torch.Tensor:
    """One time per row for rows without a step (the grid sampler uses ``cells`` cells)."""
    return TIME_SAMPLERS[knobs.time_sampler].draw(draws, cells, knobs)


def start_times(knobs: Any, draws: RowDraws, d: float | torch.Tensor) -> torch.Tensor:
    """One start time per row for rows that step by ``d`` (a power of two, a float or one per row),
    with t + d <= 1: on the grid of d (grid sampler), else the sampler's time scaled to [0, 1 - d]."""
    sampler = TIME_SAMPLERS[knobs.time_sampler]
    cells = round(1 / d) if isinstance(d, float) else torch.round(1 / d)
    t = sampler.draw(draws, cells, knobs)
    return t if sampler.on_grid else t * (1 - d)


FLOW_ROW_TIMES = ("smaller", "first")  # the time of the pair sampler's rows with d = 0 (see interval_times)


def interval_times(
    knobs: Any, draws: RowDraws, interval_rows: int, cells: int, flow_time: str = "smaller"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, d, interval) of the pair sampler: two draws a, c per row (``cells``: the grid sampler's);
    on the first ``interval_rows`` rows of the draws the interval runs from the smaller to the larger
    (t = min(a, c), d = |a - c|, ``interval`` True), on the rest d = 0 and t is the smaller draw
    (``flow_time`` "smaller", as MeanFlow's official code) or the first one ("first")."""
    a = times(knobs, draws, cells)
    c = times(knobs, draws, cells)
    interval = torch.arange(len(draws), device=draws.device) < interval_rows
    t = torch.minimum(a, c) if flow_time == "smaller" else torch.where(interval, torch.minimum(a, c), a)
    d = torch.where(interval, (a - c).abs(), torch.zeros_like(a))
    return t, d, interval
