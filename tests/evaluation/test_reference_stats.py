"""`shortcut ref-stats --convert`: the authors' mu/sigma files and ADM's reference batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shortcut_models.cli import main
from shortcut_models.evaluation import convert_reference_stats, fid_extractor
from shortcut_models.metrics.frechet import FeatureStats, ReferenceStats


def random_stats(rng, d=16):
    a = rng.normal(size=(d, 3 * d))
    return rng.normal(size=d), a @ a.T / (3 * d)


def test_the_authors_mu_sigma_are_taken_as_they_are(tmp_path, capsys):
    mu, sigma = random_stats(np.random.default_rng(0))
    np.savez(tmp_path / "celeba256_fidstats_ours.npz", mu=mu.astype(np.float32), sigma=sigma.astype(np.float32))
    out = tmp_path / "ref.npz"
    assert main(["ref-stats", "--convert", str(tmp_path / "celeba256_fidstats_ours.npz"), "--out", str(out)]) == 0
    assert "stored statistics" in capsys.readouterr().out
    ref = ReferenceStats.load_npz(out)
    np.testing.assert_array_equal(ref.mu, mu.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(ref.sigma, sigma.astype(np.float32).astype(np.float64))


def adm_batch(path, rng, n=12, size=40, stats=None):
    """An ADM-style reference batch: uint8 images arr_0 [N, H, W, 3], plus stored mu/sigma and spatial ones."""
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    extra = (
        {} if stats is None else {"mu": stats[0], "sigma": stats[1], "mu_s": stats[0][:4], "sigma_s": stats[1][:4, :4]}
    )
    np.savez(path, arr_0=images, **extra)
    return images


def test_an_adm_batch_keeps_its_stored_statistics_and_counts_its_images(tmp_path):
    rng = np.random.default_rng(1)
    mu, sigma = random_stats(rng, 2048)
    adm_batch(tmp_path / "VIRTUAL.npz", rng, stats=(mu, sigma))
    result = convert_reference_stats(tmp_path / "VIRTUAL.npz", tmp_path / "ref.npz")
    assert result.method == "stored" and result.stats.count == 12
    np.testing.assert_array_equal(ReferenceStats.load_npz(tmp_path / "ref.npz").sigma, sigma)


@pytest.mark.slow  # two Inception passes on the CPU
def test_recomputing_from_the_images_uses_our_inception_and_reports_the_difference(tmp_path, inception_weights):
    rng = np.random.default_rng(2)
    images = adm_batch(tmp_path / "batch.npz", rng, n=4)
    weights = str(inception_weights)
    first = convert_reference_stats(tmp_path / "batch.npz", tmp_path / "r1.npz", inception_weights=weights)
    assert first.method == "recomputed" and first.stats.count == 4 and first.fd_to_stored is None
    direct = FeatureStats().update(fid_extractor(weights)(torch.from_numpy(images).permute(0, 3, 1, 2) / 127.5 - 1))
    np.testing.assert_allclose(first.stats.mu, direct.mean(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(first.stats.sigma, direct.covariance(), rtol=1e-6, atol=1e-9)
    np.savez(tmp_path / "with_stats.npz", arr_0=images, mu=first.stats.mu, sigma=first.stats.sigma)
    second = convert_reference_stats(
        tmp_path / "with_stats.npz", tmp_path / "r2.npz", recompute=True, inception_weights=weights
    )
    assert second.method == "recomputed"
    assert second.fd_to_stored == pytest.approx(0.0, abs=1e-6)  # the same pipeline on the same images


@pytest.mark.parametrize(
    ("arrays", "args", "message"),
    [
        ({"x": np.zeros(3)}, [], "holds neither mu/sigma nor images arr_0 (it has: x)"),
        ({"mu": np.zeros(4), "sigma": np.zeros((3, 3))}, [], "must be [D] and [D, D]"),
        ({"mu": np.zeros(2), "sigma": np.array([[1.0, 2.0], [0.0, 1.0]])}, [], "sigma is not symmetric"),
        ({"mu": np.array([np.nan, 0.0]), "sigma": np.eye(2)}, [], "NaN or infinite"),
        ({"mu": np.zeros(2), "sigma": np.eye(2)}, ["--recompute"], "--recompute needs the images arr_0"),
        ({"arr_0": np.zeros((3, 8, 8), np.uint8)}, [], "arr_0 must hold uint8 images [N, H, W, 3]"),
    ],
)
def test_bad_files_are_one_line(tmp_path, capsys, arrays, args, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    rc = main(["ref-stats", "--convert", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o.npz"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1


def test_a_pickled_npz_is_refused_without_unpickling(tmp_path, capsys):
    np.savez(tmp_path / "obj.npz", mu=np.array([{"a": 1}], dtype=object), sigma=np.eye(1))
    assert main(["ref-stats", "--convert", str(tmp_path / "obj.npz"), "--out", str(tmp_path / "o.npz")]) == 2
    assert "allow_pickle" in capsys.readouterr().err


def test_data_and_convert_are_exclusive(tmp_path, capsys):
    assert main(["ref-stats", "--out", str(tmp_path / "o.npz")]) == 2
    assert main(["ref-stats", "--data", "digits", "--convert", "x.npz", "--out", str(tmp_path / "o.npz")]) == 2
    assert capsys.readouterr().err.count("give --data") == 2
