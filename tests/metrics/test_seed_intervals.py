"""Means over seeds with Student-t intervals, and Welch's test deciding ties."""

import math

import pytest

from shortcut_models.metrics.seed_intervals import compare, differs, seed_mean, welch_p


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
