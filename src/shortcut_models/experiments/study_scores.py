"""The study's scores as a table of rows, queried by (domain, method, recipe, budget, step count), and
everything its reports read (:class:`StudyResults`).

Every row is one (run, budget, sampling step count): its domain, method, recipe, seed, budget, init (the
share of the budget a fine-tuning run trained; 0 from scratch), steps, the metrics (digits: ``fd_digits``,
``precision``, ``recall`` and the second metric; checkerboard: ``swd``, ``on_board``) and their floors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.train_config import TrainConfig
from ..metrics.seed_intervals import SeedMean, compare, seed_mean
from .study_plan import StudyPlan

# The headline metric of each domain and its lower-is-better direction.
HEADLINE = {"digits": "fd_digits", "checkerboard": "swd"}


@dataclass
class Scores:
    rows: list[dict[str, Any]]

    def select(
        self,
        domain: str,
        method: str,
        recipe: str = "own",
        budget: int | None = None,
        steps: int | None = None,
        init: float = 0.0,
    ) -> list[dict[str, Any]]:
        """Rows of one (domain, method, recipe, init), at ``budget`` and ``steps`` when given, by seed."""
        sel = [
            r
            for r in self.rows
            if r["domain"] == domain
            and r["method"] == method
            and r["recipe"] == recipe
            and float(r.get("init", 0.0)) == init
            and (budget is None or int(r["budget"]) == budget)
            and (steps is None or int(r["steps"]) == steps)
        ]
        return sorted(sel, key=lambda r: int(r["seed"]))

    def values(self, key: str, domain: str, method: str, recipe: str, budget: int, steps: int, init=0.0) -> list[float]:
        """``key`` over seeds (one value per seed; ValueError when a seed has two rows, which would count one
        run twice in the interval)."""
        rows = self.select(domain, method, recipe, budget, steps, init)
        seeds = [int(r["seed"]) for r in rows]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{domain}/{method} ({recipe}) at {budget} steps has two scores of one seed: {seeds}")
        return [float(r[key]) for r in rows]

    def mean(self, key: str, domain: str, method: str, recipe: str, budget: int, steps: int, init=0.0) -> SeedMean:
        return seed_mean(self.values(key, domain, method, recipe, budget, steps, init))

    def has(self, domain: str, method: str, recipe: str, budget: int, steps: int, init=0.0) -> bool:
        return bool(self.select(domain, method, recipe, budget, steps, init))

    def floor(self, key: str, domain: str) -> float | None:
        """The data floor of ``key`` (mean over the rows that carry it)."""
        floors = [float(r[f"{key}_floor"]) for r in self.rows if r["domain"] == domain and f"{key}_floor" in r]
        return sum(floors) / len(floors) if floors else None

    def budgets(self, domain: str = "digits") -> list[int]:
        return sorted({int(r["budget"]) for r in self.rows if r["domain"] == domain and not r.get("init")})


def ordered(
    scores: Scores, key: str, domain: str, methods: Iterable[str], recipe: str, budget: int, steps: int
) -> list[tuple[str, SeedMean, bool]]:
    """Methods best first by the mean of ``key``; each with its mean and whether it is significantly better
    than the next one (Welch's t-test over seeds, p < 0.05; False: a tie with the next)."""
    have = [m for m in methods if scores.has(domain, m, recipe, budget, steps)]
    means = {m: scores.mean(key, domain, m, recipe, budget, steps) for m in have}
    order = sorted(have, key=lambda m: means[m].mean)
    out = []
    for i, m in enumerate(order):
        ahead = False
        if i + 1 < len(order):
            nxt = order[i + 1]
            ahead = (
                compare(
                    scores.values(key, domain, m, recipe, budget, steps),
                    scores.values(key, domain, nxt, recipe, budget, steps),
                )
                == "better"
            )
        out.append((m, means[m], ahead))
    return out


def leaders(
    scores: Scores, key: str, domain: str, methods: Iterable[str], recipe: str, budget: int, steps: int
) -> list[str]:
    """The method with the best mean of ``key`` and every method not significantly worse than it (Welch's
    t-test over seeds, p < 0.05), best first."""
    ranked = ordered(scores, key, domain, methods, recipe, budget, steps)
    if not ranked:
        return []
    best = scores.values(key, domain, ranked[0][0], recipe, budget, steps)
    return [ranked[0][0]] + [
        m for m, _, _ in ranked[1:] if compare(scores.values(key, domain, m, recipe, budget, steps), best) == "tie"
    ]


def reversals(
    scores: Scores, key: str, domain: str, methods: Iterable[str], recipe: str, budgets: tuple[int, int], steps: int
) -> list[tuple[str, str]]:
    """Pairs (a, b) that swap places between two budgets beyond seed noise: ``a`` significantly better than
    ``b`` at ``budgets[0]`` and significantly worse at ``budgets[1]`` (Welch's t-test over seeds, p < 0.05)."""
    have = [m for m in methods if all(scores.has(domain, m, recipe, b, steps) for b in budgets)]

    def verdict(x: str, y: str, budget: int) -> str:
        return compare(
            scores.values(key, domain, x, recipe, budget, steps), scores.values(key, domain, y, recipe, budget, steps)
        )

    first, second = budgets
    return [
        (x, y)
        for x in have
        for y in have
        if x != y and verdict(x, y, first) == "better" and verdict(x, y, second) == "worse"
    ]


@dataclass
class StudyResults:
    """What a report reads once every stage has run: the plan, the scores, each method's step cost against
    flow matching (``costs``, empty without digits), the best one-step method without a teacher (``winner``,
    when the second stage ran), the figures, the network's size and the first flow-matching run's config
    (None without digits), wall seconds (``timing``, ``this call``) and the machine (``threads``, ``jobs``)."""

    out: Path
    plan: StudyPlan
    scores: Scores
    costs: dict[str, dict[str, float]]
    winner: str | None
    figures: dict[str, Path | None]
    params: int
    config: TrainConfig | None
    seconds: dict[str, float]
    machine: dict[str, int]
