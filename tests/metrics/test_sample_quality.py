"""Inception Score, KID and improved precision/recall: closed forms, and equality with torch-fidelity."""

from __future__ import annotations

import ast
import importlib.util
import math
import types
from pathlib import Path

import pytest
import torch

from shortcut_models.metrics import inception_score, kernel_distance, precision_recall


@pytest.fixture(scope="module")
def fidelity():
    """torch-fidelity's metric modules (its KID, IS and precision/recall functions), as namespaces.

    Its package imports torchvision, which does not load beside the CPU torch here, and the metric
    modules import the package's helpers. The metric functions need neither: each module's source is
    run with its torch_fidelity imports removed and three trivial helpers in their place.
    """
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None:
        pytest.skip("torch-fidelity is not installed")
    root = Path(spec.submodule_search_locations[0])
    helpers = {"get_kwarg": lambda key, kwargs: kwargs[key], "vassert": _vassert, "vprint": lambda *a: None}
    modules = {}
    for name in ("isc", "kid", "prc"):
        tree = ast.parse((root / f"metric_{name}.py").read_text())
        tree.body = [
            node
            for node in tree.body
            if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch_fidelity"))
        ]
        namespace = dict(helpers)
        exec(compile(tree, f"torch_fidelity/metric_{name}.py", "exec"), namespace)
        modules[name] = types.SimpleNamespace(**namespace)
    return modules


def _vassert(condition, message):
    assert condition, message


def test_inception_score_closed_forms():
    # every sample certain of its own class, classes balanced: the score is the number of classes
    confident = torch.eye(5).repeat(20, 1) * 1e4
    assert inception_score(confident, splits=1) == (pytest.approx(5.0, rel=1e-9), 0.0)
    assert 1.0 < inception_score(confident)[0] <= 5.0  # groups of 10 rows hold some of the classes
    # every sample the same distribution: the score is 1
    assert inception_score(torch.randn(1, 7).repeat(50, 1)) == (pytest.approx(1.0), pytest.approx(0.0, abs=1e-12))


def test_inception_score_equals_torch_fidelity(fidelity):
    logits = torch.randn(200, 10) * 3
    ours = inception_score(logits)
    theirs = fidelity["isc"].isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    assert ours == (
        pytest.approx(theirs["inception_score_mean"], rel=1e-12),
        pytest.approx(theirs["inception_score_std"]),
    )


def test_kid_closed_forms():
    # two sets of one repeated point each: MMD^2 = k(a, a) + k(b, b) - 2 k(a, b), k(u, v) = (u.v / D + 1)^3
    a, b = torch.tensor([1.0, 2.0, 0.0, -1.0]), torch.tensor([0.5, 0.0, 1.0, 1.0])

    def k(u, v):
        return (float(u @ v) / 4 + 1) ** 3

    mean, std = kernel_distance(a.repeat(20, 1), b.repeat(30, 1), subsets=3, subset_size=10)
    assert mean == pytest.approx(k(a, a) + k(b, b) - 2 * k(a, b), rel=1e-12) and std == pytest.approx(0, abs=1e-9)
    # two samples of one distribution: about 0 (unbiased), within a few spreads
    x = torch.randn(600, 8, dtype=torch.float64)
    mean, std = kernel_distance(x[:300], x[300:], subsets=20, subset_size=100)
    assert abs(mean) < 4 * std + 1e-3
    # a shift of the mean by c in every coordinate raises KID well above its spread
    mean, std = kernel_distance(x, x + 1.0, subsets=10, subset_size=100)
    assert mean > 10 * std and mean > 0.5


def test_kid_equals_torch_fidelity(fidelity):
    """Both in float64 on the same features: equal up to float64 rounding (measured 3e-15 relative).

    torch-fidelity computes in the dtype it is given. Given float32 features, its kernel sums round in float32
    and differ from our float64 ones by 1.5e-7 to 9.7e-7 (relative, measured), depending on which BLAS kernels
    the CPU gets (OpenBLAS's SSE ones: the most), which a tolerance of 1e-6 barely held; so its float64 path
    is the reference. A different estimator (biased MMD, other subsets, another kernel) changes the values by
    far more than 1e-9.
    """
    a, b = torch.randn(150, 16, dtype=torch.float64), torch.randn(120, 16, dtype=torch.float64) + 0.3
    ours = kernel_distance(a, b, subsets=7, subset_size=50, seed=3)
    theirs = fidelity["kid"].kid_features_to_metric(
        a,
        b,
        kid_subsets=7,
        kid_subset_size=50,
        rng_seed=3,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
        verbose=False,
    )
    assert ours[0] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert ours[1] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)


def test_precision_recall_closed_forms():
    real = torch.randn(400, 2)
    assert precision_recall(real, real) == (1.0, 1.0)
    # half the samples far away from the data: precision 1/2; they cover the data as well as the other half
    far = torch.cat([real[:200], real[200:] + 100.0])
    precision, recall = precision_recall(far, real)
    assert precision == pytest.approx(0.5) and recall > 0.8
    # collapse onto one point: every sample is data-like, almost none of the data is covered
    collapsed = torch.zeros(100, 2) + torch.randn(100, 2) * 1e-4
    precision, recall = precision_recall(collapsed, real)
    assert precision == 1.0 and recall < 0.05


def test_precision_recall_equal_torch_fidelity(fidelity):
    fake, real = torch.randn(230, 6) * 1.3, torch.randn(250, 6)
    ours = precision_recall(fake, real, k=3, block=64)
    precision, recall = fidelity["prc"].calculate_precision_recall_full(fake.double(), real.double(), 3, 10000)
    assert ours == (pytest.approx(precision), pytest.approx(recall))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: inception_score(torch.randn(5, 3)), "N >= 10"),
        (lambda: kernel_distance(torch.randn(5, 3), torch.randn(5, 4)), "KID needs"),
        (lambda: precision_recall(torch.randn(3, 2), torch.randn(10, 2)), "more than 3 rows"),
    ],
)
def test_bad_shapes_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_scores_are_finite_numbers():
    mean, std = inception_score(torch.randn(30, 4))
    assert math.isfinite(mean) and math.isfinite(std) and mean >= 1.0
