"""Means over training seeds with 95% intervals, and whether two methods differ beyond seed noise.

A score of a method trained with several seeds is reported as its mean with a two-sided 95% Student-t
interval, mean +- t(0.975, n - 1) * s / sqrt(n) (s: the sample standard deviation over seeds). Two
methods differ when Welch's t-test over their seeds (unequal variances) gives p < 0.05; otherwise the
comparison is a tie. With one seed there is no interval (half-width nan) and nothing differs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class SeedMean:
    """Mean of a score over seeds with the half-width of its 95% interval (nan with one seed)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def text(self, digits: int = 2) -> str:
        """'12.34 +- 1.20' (or '12.34' with one seed)."""
        if math.isnan(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def seed_mean(values: Sequence[float]) -> SeedMean:
    """Mean and 95% t-interval half-width of ``values`` (one per seed)."""
    if not values:
        raise ValueError("seed_mean needs at least one value")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return SeedMean(mean, math.nan, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return SeedMean(mean, float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * sd / math.sqrt(n), n)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test between two sets of seeds (1.0 when either has one seed or
    both have no spread and equal means)."""
    if len(a) < 2 or len(b) < 2:
        return 1.0
    if max(a) == min(a) and max(b) == min(b):
        return 1.0 if a[0] == b[0] else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def differs(a: Sequence[float], b: Sequence[float], alpha: float = 1 - LEVEL) -> bool:
    """True when the two sets of seeds differ at level ``alpha`` (Welch's t-test)."""
    return welch_p(a, b) < alpha


def compare(a: Sequence[float], b: Sequence[float], lower_is_better: bool = True) -> str:
    """'better', 'worse' (``a`` against ``b``, significant by Welch's t-test) or 'tie'."""
    if not differs(a, b):
        return "tie"
    a_lower = sum(a) / len(a) < sum(b) / len(b)
    return "better" if a_lower == lower_is_better else "worse"
