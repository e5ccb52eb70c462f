"""Means over training seeds with 95% intervals, and whether two methods differ beyond seed noise.

A score of a method trained with several seeds is reported as its mean with a two-sided 95% Student-t
interval, mean +- t(0.975, n - 1) * s / sqrt(n) (s: the sample standard deviation over seeds). Two
methods differ when Welch's t-test over their seeds (unequal variances) gives p < 0.05; otherwise the
comparison is a tie. With one seed there is no interval (half-width nan) and nothing differs.

A table column compares many pairs of methods at once; :func:`holm` adjusts their p-values for that
multiplicity (Holm's step-down procedure), and :func:`seeds_to_separate` says how many seeds a side two
tied methods would need at their observed spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95
ALPHA = 1 - LEVEL  # the level of every test: p < ALPHA is significant


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


def differs(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> bool:
    """True when the two sets of seeds differ at level ``alpha`` (Welch's t-test)."""
    return welch_p(a, b) < alpha


def compare(a: Sequence[float], b: Sequence[float], lower_is_better: bool = True) -> str:
    """'better', 'worse' (``a`` against ``b``, significant by Welch's t-test) or 'tie'."""
    if not differs(a, b):
        return "tie"
    a_lower = sum(a) / len(a) < sum(b) / len(b)
    return "better" if a_lower == lower_is_better else "worse"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of m p-values, in their input order.

    With the p-values sorted ascending, p(1) <= ... <= p(m), the adjusted value of the i-th is
    max over j <= i of min(1, (m - j + 1) p(j)); a hypothesis is rejected at level alpha when its adjusted
    p-value is below alpha. This controls the chance of any false "significant" in the family at alpha,
    whatever the dependence between the tests (Holm 1979), and rejects everything Bonferroni does."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def seeds_to_separate(
    delta: float, sd_a: float, sd_b: float, alpha: float = ALPHA, power: float = 0.8, limit: int = 100_000
) -> int | None:
    """Seeds per method (the same number each) at which Welch's two-sided t-test at level ``alpha`` finds a
    true gap ``delta`` between two methods with seed standard deviations ``sd_a`` and ``sd_b`` with
    probability ``power``; None when no number up to ``limit`` does (no gap, or one far below the spread).

    With n seeds a side the standard error of the gap is se = sqrt((sd_a^2 + sd_b^2) / n), Welch's degrees
    of freedom are df = (n - 1) (sd_a^2 + sd_b^2)^2 / (sd_a^4 + sd_b^4), and the power is
    P(|T| > t(1 - alpha/2, df)) for T noncentral t with df degrees of freedom and noncentrality
    delta / se. The search starts at the normal approximation
    n0 = (z(1 - alpha/2) + z(power))^2 (sd_a^2 + sd_b^2) / delta^2 (which never overshoots: the t-test
    has less power than the z-test) and counts up. Equal spreads give Student's case: an effect of half
    a standard deviation needs 64 a side, 0.8 needs 26 (Cohen 1988, Table 2.4.1)."""
    delta, var = abs(delta), sd_a**2 + sd_b**2
    if delta == 0:
        return None
    if var == 0:
        return 2
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    n0 = z * z * var / (delta * delta)
    if n0 > limit:
        return None
    for n in range(max(2, math.floor(n0)), limit + 1):
        df = (n - 1) * var**2 / (sd_a**4 + sd_b**4)
        shift = delta / math.sqrt(var / n)
        crit = float(stats.t.ppf(1 - alpha / 2, df))
        if float(stats.nct.sf(crit, df, shift) + stats.nct.cdf(-crit, df, shift)) >= power:
            return n
    return None
