"""Fréchet distance against closed forms, and the streaming float64 statistics."""

import numpy as np
import pytest
import torch

from shortcut_models.metrics.frechet import (
    FeatureStats,
    ReferenceStats,
    frechet_distance,
    frechet_distance_from_stats,
)


def test_diagonal_gaussians_match_closed_form():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_commuting_full_covariances_match_closed_form():
    # S1 = Q diag(a) Q^T and S2 = Q diag(b) Q^T commute: sqrt(S1 S2) = Q diag(sqrt(a b)) Q^T.
    rng = np.random.default_rng(1)
    d = 12
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.2, 4.0, size=d), rng.uniform(0.2, 4.0, size=d)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # symmetric in its two arguments, and accepts torch tensors
    t = [torch.from_numpy(v) for v in (mu2, s2, mu1, s1)]
    assert frechet_distance(*t) == pytest.approx(expected, rel=1e-9)


def test_identical_sets_give_zero():
    feats = np.random.default_rng(2).normal(size=(500, 32)) * 3 + 1
    stats = FeatureStats().update(feats)
    fd = frechet_distance(stats.mean(), stats.covariance(), stats.mean(), stats.covariance())
    assert 0.0 <= fd < 1e-6


def test_near_singular_covariance_is_finite_and_non_negative():
    rng = np.random.default_rng(3)
    a = FeatureStats().update(rng.normal(size=(10, 64)))  # rank 9 covariance in 64-d
    b = FeatureStats().update(rng.normal(size=(10, 64)) + 0.5)
    fd = frechet_distance_from_stats(a, b)
    assert np.isfinite(fd) and fd >= 0.0
    assert frechet_distance_from_stats(a, a) < 1e-6
    # a constant feature (zero variance) in both sets
    x, y = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    x[:, 0] = y[:, 0] = 1.0
    fd = frechet_distance_from_stats(FeatureStats().update(x), FeatureStats().update(y))
    assert np.isfinite(fd) and 0.0 <= fd < 1.0


def test_streaming_equals_one_shot():
    rng = np.random.default_rng(4)
    feats = rng.normal(size=(1000, 20)) * rng.uniform(0.5, 2, size=20) + 3.0
    stats = FeatureStats()
    for chunk in np.array_split(feats, 7):
        stats.update(torch.from_numpy(chunk).float() if len(chunk) % 2 else chunk)
    ref = FeatureStats().update(feats)
    assert stats.count == 1000
    np.testing.assert_allclose(ref.mean(), feats.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.covariance(), np.cov(feats, rowvar=False), rtol=1e-10, atol=1e-12)
    # float32 chunks lose only the float32 rounding of the inputs
    np.testing.assert_allclose(stats.mean(), feats.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats.covariance(), np.cov(feats, rowvar=False), rtol=1e-5, atol=1e-6)


def test_merge_equals_accumulating_everything():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(300, 10)), rng.normal(size=(123, 10)) + 1
    a, b = FeatureStats().update(x), FeatureStats().update(y)
    merged = a.merge(b)
    whole = FeatureStats().update(np.concatenate([x, y]))
    assert merged.count == whole.count == 423
    np.testing.assert_allclose(merged.mean(), whole.mean(), rtol=1e-13)
    np.testing.assert_allclose(merged.covariance(), whole.covariance(), rtol=1e-12, atol=1e-14)
    assert a.count == 300 and b.count == 123  # inputs untouched
    assert FeatureStats().merge(b).count == 123


def test_state_tensors_round_trip_and_sum():
    rng = np.random.default_rng(6)
    parts = [FeatureStats().update(rng.normal(size=(50, 4))) for _ in range(3)]
    states = [p.state_tensors() for p in parts]
    for t in states[0]:
        assert t.dtype == torch.float64
    summed = [sum(s[i] for s in states) for i in range(3)]  # what an all-reduce would give
    rebuilt = FeatureStats.from_state_tensors(*summed)
    expected = parts[0].merge(parts[1]).merge(parts[2])
    assert rebuilt.count == 150
    np.testing.assert_allclose(rebuilt.covariance(), expected.covariance(), rtol=1e-12)


def test_npz_round_trip(tmp_path):
    feats = np.random.default_rng(7).normal(size=(100, 6))
    stats = FeatureStats().update(feats)
    path = tmp_path / "ref.npz"
    stats.to_npz(path)
    with np.load(path) as f:
        assert {"mu", "sigma"} <= set(f.files)
        assert f["mu"].dtype == np.float64 and f["sigma"].shape == (6, 6)
    ref = FeatureStats.load_npz(path)
    assert isinstance(ref, ReferenceStats) and ref.count == 100
    np.testing.assert_array_equal(ref.mu, stats.mean())
    np.testing.assert_array_equal(ref.sigma, stats.covariance())
    assert frechet_distance_from_stats(ref, stats) < 1e-9
    # a file with only mu and sigma, as other FID tools write it
    np.savez(tmp_path / "other.npz", mu=ref.mu, sigma=ref.sigma)
    assert ReferenceStats.load_npz(tmp_path / "other.npz").count is None


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        FeatureStats().update(np.zeros(5))
    stats = FeatureStats().update(np.zeros((3, 4)))
    with pytest.raises(ValueError):
        stats.update(np.zeros((3, 5)))
    with pytest.raises(ValueError):
        FeatureStats().update(np.full((2, 2), np.nan))
    with pytest.raises(ValueError):
        FeatureStats().update(np.zeros((1, 3))).covariance()
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
