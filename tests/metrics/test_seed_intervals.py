"""Means over seeds with Student-t intervals, Welch's test deciding ties, Holm's correction for a family of
tests and the seeds that would separate two methods."""

import math

import pytest

from shortcut_models.metrics.seed_intervals import compare, differs, holm, seed_mean, seeds_to_separate, welch_p


def test_interval_is_the_student_t_half_width():
    s = seed_mean([1.0, 2.0, 3.0])  # mean 2, sample sd 1, t(0.975, 2) = 4.302653
    assert s.mean == 2.0 and s.n == 3
    assert s.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert (s.low, s.high) == pytest.approx((2.0 - s.half_width, 2.0 + s.half_width))
    assert s.text() == "2.00 ± 2.48"


def test_one_seed_has_no_interval_and_differs_from_nothing():
    s = seed_mean([5.0])
    assert math.isnan(s.half_width) and s.text() == "5.00"
    assert welch_p([5.0], [9.0, 9.1]) == 1.0 and compare([5.0], [9.0, 9.1]) == "tie"
    with pytest.raises(ValueError):
        seed_mean([])


def test_welch_separates_far_sets_and_ties_overlapping_ones():
    low, high = [10.0, 10.5, 9.8], [20.0, 19.5, 20.3]
    assert differs(low, high) and compare(low, high) == "better" and compare(high, low) == "worse"
    assert compare(high, low, lower_is_better=False) == "better"
    overlapping = [10.2, 11.0, 9.0]
    assert not differs(low, overlapping) and compare(low, overlapping) == "tie"
    # the scipy value, by hand: t = (mean_a - mean_b) / sqrt(va/na + vb/nb), Welch-Satterthwaite dof
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]
    va, vb = 1.0, 4.0
    t = (2.0 - 4.0) / math.sqrt(va / 3 + vb / 3)
    dof = (va / 3 + vb / 3) ** 2 / ((va / 3) ** 2 / 2 + (vb / 3) ** 2 / 2)
    from scipy import stats

    assert welch_p(a, b) == pytest.approx(2 * stats.t.sf(abs(t), dof), rel=1e-9)


def test_sets_without_spread():
    assert welch_p([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert welch_p([1.0, 1.0], [2.0, 2.0]) == 0.0


def test_holm_on_a_worked_example():
    # m = 4, sorted 0.005 < 0.01 < 0.03 < 0.04: times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; each at least the
    # one before: 0.02, 0.03, 0.06, 0.06; returned in the input order
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # at 0.05 Holm rejects the first two; Bonferroni (times 4) only the smallest
    assert [p < 0.05 for p in holm([0.01, 0.04, 0.03, 0.005])] == [True, False, False, True]
    assert holm([0.2, 0.6]) == pytest.approx([0.4, 0.6]) and holm([0.7, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.03]) == [0.03] and holm([]) == []


def test_holm_keeps_the_order_and_never_lowers_a_p_value():
    p = [0.001, 0.2, 0.04, 0.013, 0.5, 0.0004, 0.04, 0.9]
    adjusted = holm(p)
    assert all(raw <= adj <= 1.0 for raw, adj in zip(p, adjusted))
    pairs = sorted(zip(p, adjusted))
    assert all(a[1] <= b[1] for a, b in zip(pairs, pairs[1:]))  # a smaller p-value never gets a larger adjusted one
    assert all(adj <= min(1.0, len(p) * raw) for raw, adj in zip(p, adjusted))  # never stricter than Bonferroni


def test_seeds_to_separate_matches_cohens_table_and_the_normal_formula():
    # equal spreads: Student's two-sample test; Cohen (1988), Table 2.4.1, two-sided 0.05, power 0.8
    assert seeds_to_separate(0.5, 1.0, 1.0) == 64
    assert seeds_to_separate(0.8, 1.0, 1.0) == 26 and seeds_to_separate(1.0, 1.0, 1.0) == 17
    assert seeds_to_separate(1.6, 2.0, 2.0) == 26  # the effect is the gap over the spread, not the gap
    # unequal spreads: a little above the normal approximation (z(0.975) + z(0.8))^2 (s1^2 + s2^2) / gap^2 = 78.5
    # (Welch's t has about 1.2 (n - 1) degrees of freedom here, so the t-test needs only a few more)
    n = seeds_to_separate(1.0, 3.0, 1.0)
    assert 79 <= n <= 82
    # a stricter level (Holm's first step over 55 pairs) needs more seeds
    assert seeds_to_separate(1.0, 3.0, 1.0, alpha=0.05 / 55) > n
    assert seeds_to_separate(0.0, 1.0, 1.0) is None and seeds_to_separate(1e-4, 1.0, 1.0) is None
    assert seeds_to_separate(1.0, 0.0, 0.0) == 2
