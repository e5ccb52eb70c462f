"""The study's scores as a table of rows, queried by (domain, method, recipe, budget, step count), and
everything its reports read (:class:`StudyResults`).

Every row is one (run, budget, sampling step count): its domain, method, recipe, seed, budget, init (the
share of the budget a fine-tuning run trained; 0 from scratch), steps, the metrics (digits: ``fd_digits``,
``precision``, ``recall`` and the second metric; checkerboard: ``swd``, ``on_board``) and their floors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from ..config.train_config import TrainConfig
from ..metrics.seed_intervals import ALPHA, SeedMean, holm, seed_mean, welch_p
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


Column = dict[str, list[float]]  # one table column: each method's scores over seeds


def column(
    scores: Scores, key: str, domain: str, methods: Iterable[str], recipe: str, budget: int, steps: int
) -> Column:
    """``key`` over seeds of every method of ``methods`` scored at (``recipe``, ``budget``, ``steps``)."""
    return {
        m: scores.values(key, domain, m, recipe, budget, steps)
        for m in methods
        if scores.has(domain, m, recipe, budget, steps)
    }


def pair_p(values: Column) -> dict[frozenset[str], float]:
    """Every pair of methods of a column with its Welch p-value over seeds, Holm-adjusted over the
    column's pairs (the family: m methods give m (m - 1) / 2 tests)."""
    pairs = list(combinations(values, 2))
    adjusted = holm([welch_p(values[a], values[b]) for a, b in pairs])
    return {frozenset(pair): p for pair, p in zip(pairs, adjusted)}


def verdict_in(values: Column, p: dict[frozenset[str], float], a: str, b: str) -> str:
    """'better', 'worse' (``a`` against ``b``, lower is better, Holm-adjusted p < 0.05) or 'tie'."""
    if p[frozenset((a, b))] >= ALPHA:
        return "tie"
    return "better" if seed_mean(values[a]).mean < seed_mean(values[b]).mean else "worse"


def rank(values: Column, family: Column | None = None) -> list[tuple[str, SeedMean, bool]]:
    """The methods of ``values`` best first by their mean, each with its mean and whether it is
    significantly better than the next (Welch's t-test over seeds, p < 0.05 after Holm's correction over
    the pairs of ``family``, by default ``values`` itself; False: a tie with the next)."""
    family = values if family is None else family
    p = pair_p(family)
    means = {m: seed_mean(v) for m, v in values.items()}
    order = sorted(values, key=lambda m: means[m].mean)
    return [
        (m, means[m], i + 1 < len(order) and verdict_in(family, p, m, order[i + 1]) == "better")
        for i, m in enumerate(order)
    ]


def ordered(
    scores: Scores, key: str, domain: str, methods: Iterable[str], recipe: str, budget: int, steps: int
) -> list[tuple[str, SeedMean, bool]]:
    """Methods best first by the mean of ``key``; each with its mean and whether it is significantly better
    than the next one (Welch's t-test over seeds, Holm-adjusted over the column's pairs, p < 0.05; False: a
    tie with the next)."""
    return rank(column(scores, key, domain, methods, recipe, budget, steps))


def leaders(
    scores: Scores,
    key: str,
    domain: str,
    methods: Iterable[str],
    recipe: str,
    budget: int,
    steps: int,
    family: Iterable[str] | None = None,
) -> list[str]:
    """The method of ``methods`` with the best mean of ``key`` and every one not significantly worse than it
    (Welch's t-test over seeds, p < 0.05 after Holm's correction over the pairs of the column of ``family``,
    by default ``methods``), best first."""
    methods = list(methods)
    values = column(scores, key, domain, methods, recipe, budget, steps)
    wider = values if family is None else column(scores, key, domain, family, recipe, budget, steps)
    ranked = rank(values, wider)
    if not ranked:
        return []
    p, best = pair_p(wider), ranked[0][0]
    return [best] + [m for m, _, _ in ranked[1:] if verdict_in(wider, p, m, best) == "tie"]


def reversals(
    scores: Scores, key: str, domain: str, methods: Iterable[str], recipe: str, budgets: tuple[int, int], steps: int
) -> list[tuple[str, str]]:
    """Pairs (a, b) that swap places between two budgets beyond seed noise: ``a`` significantly better than
    ``b`` at ``budgets[0]`` and significantly worse at ``budgets[1]`` (Welch's t-test over seeds, p < 0.05
    after Holm's correction over the pairs of each budget's column)."""
    have = [m for m in methods if all(scores.has(domain, m, recipe, b, steps) for b in budgets)]
    columns = [column(scores, key, domain, have, recipe, b, steps) for b in budgets]
    (first, p_first), (second, p_second) = ((c, pair_p(c)) for c in columns)
    return [
        (x, y)
        for x in have
        for y in have
        if x != y and verdict_in(first, p_first, x, y) == "better" and verdict_in(second, p_second, x, y) == "worse"
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
