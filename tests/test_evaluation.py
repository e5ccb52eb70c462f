"""`shortcut eval` and `shortcut ref-stats` on images: files, step counts, metrics and errors."""

import json

import numpy as np
import pytest

from shortcut_models.cli import main
from shortcut_models.metrics.frechet import ReferenceStats

NANO = ["model=DiT-Nano", "batch_size=16", "log_every=2", "logger=none", "sample_steps=[1]", "steps=2"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits-run")
    assert main(["train", "--out", str(out), "--quiet", *NANO]) == 0
    return out


def test_eval_writes_every_file_and_step_count(digits_run, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = [
        "eval",
        "--ckpt",
        str(digits_run),
        "--steps",
        "1,2,3",
        "--num",
        "40",
        "--out",
        str(out),
        "--quiet",
        "--save-samples",
    ]
    assert main(argv) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["metric"] == "fd-digits"
    rows = result["rows"]
    assert [r["steps"] for r in rows] == [1, 2, 3] and [r["nfe"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["fd_digits"] > r["fd_digits_floor"] > 0  # an untrained model is far from the data
        assert 0 <= r["class_accuracy"] <= 1 and r["seconds"] > 0
        samples = np.load(r["samples_file"])
        assert samples["arr_0"].shape == (40, 8, 8, 1) and samples["arr_0"].dtype == np.uint8
        assert samples["labels"].tolist() == [i % 10 for i in range(40)]
    assert (out / "metric_vs_steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "fd_digits" in header and "class_accuracy" in header
    assert "fd_digits_floor" in capsys.readouterr().out


def test_guidance_doubles_nfe(digits_run, tmp_path):
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--ckpt",
                str(digits_run),
                "--steps",
                "2",
                "--num",
                "20",
                "--cfg-scale",
                "1.5",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((out / "metrics.json").read_text())["rows"][0]["nfe"] == 4


def test_ref_stats_digits_reproduces_the_floor(tmp_path, digits_run):
    assert main(["ref-stats", "--data", "digits", "--split", "train", "--out", str(tmp_path / "train.npz")]) == 0
    assert main(["ref-stats", "--data", "digits", "--split", "test", "--out", str(tmp_path / "test.npz")]) == 0
    from shortcut_models.evaluation import digits_metric
    from shortcut_models.metrics.frechet import frechet_distance

    a, b = ReferenceStats.load_npz(tmp_path / "train.npz"), ReferenceStats.load_npz(tmp_path / "test.npz")
    assert a.count == 1497 and b.count == 300
    assert frechet_distance(b.mu, b.sigma, a.mu, a.sigma) == pytest.approx(digits_metric().floor, rel=1e-9)


@pytest.mark.slow  # Inception-v3 on the CPU
def test_fid_with_local_weights_and_reference_file(tmp_path, digits_run, inception_weights):
    weights = inception_weights
    ref = tmp_path / "ref.npz"
    assert (
        main(
            [
                "ref-stats",
                "--data",
                "digits",
                "--metric",
                "fid",
                "--num",
                "6",
                "--inception-weights",
                str(weights),
                "--out",
                str(ref),
            ]
        )
        == 0
    )
    assert ReferenceStats.load_npz(ref).mu.shape == (2048,)
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--ckpt",
                str(digits_run),
                "--metric",
                "fid",
                "--steps",
                "1",
                "--num",
                "6",
                "--ref-stats",
                str(ref),
                "--inception-weights",
                str(weights),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    row = json.loads((out / "metrics.json").read_text())["rows"][0]
    assert row["fid"] > 0 and "class_accuracy" not in row


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--metric", "fid"], "needs reference statistics"),
        (["--metric", "fid", "--ref-stats", "/nope.npz"], "reference statistics not found"),
        (["--metric", "swd"], "for 2-D data"),
    ],
)
def test_eval_bad_metric_arguments_exit_2(digits_run, tmp_path, capsys, extra, message):
    assert main(["eval", "--ckpt", str(digits_run), "--steps", "1", "--num", "4", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_missing_inception_weights_file_exits_2(tmp_path, capsys):
    argv = [
        "ref-stats",
        "--data",
        "digits",
        "--metric",
        "fid",
        "--inception-weights",
        str(tmp_path / "none.pth"),
        "--out",
        "x.npz",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not found" in err


def test_set_measures_are_those_of_the_saved_samples(digits_run, tmp_path):
    """`--metrics fd-digits,is,kid,prc`: each set measure equals the function applied to the saved samples."""
    import torch

    from shortcut_models.evaluation import digits_metric
    from shortcut_models.metrics import inception_score, kernel_distance, precision_recall

    out = tmp_path / "eval"
    argv = ["eval", "--ckpt", str(digits_run), "--steps", "1", "--num", "60", "--batch-size", "25"]
    assert main([*argv, "--metrics", "fd-digits,is,kid,prc", "--save-samples", "--out", str(out), "--quiet"]) == 0
    row = json.loads((out / "metrics.json").read_text())["rows"][0]
    images = torch.from_numpy(np.load(row["samples_file"])["arr_0"]).permute(0, 3, 1, 2).float() / 127.5 - 1
    metric = digits_metric()
    features, reference = metric.extractor(images), torch.from_numpy(metric.reference.features)
    assert reference.shape == (1497, metric.reference.mu.shape[0])  # every train image
    assert (row["is"], row["is_std"]) == pytest.approx(inception_score(metric.logits(images)), rel=1e-3)
    assert (row["kid"], row["kid_std"]) == pytest.approx(kernel_distance(features, reference), rel=1e-3)
    assert (row["precision"], row["recall"]) == pytest.approx(precision_recall(features, reference), abs=1 / 60)
    assert row["precision"] < 0.5 and row["kid"] > 0  # an untrained model: most samples are failures
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert all(k in header for k in ("is", "kid", "precision", "recall"))


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ("fid,fd-digits", "more than one distance"),
        ("fd-digits,bogus", "unknown metric 'bogus'"),
    ],
)
def test_bad_metric_lists_exit_2(digits_run, tmp_path, capsys, metrics, message):
    argv = ["eval", "--ckpt", str(digits_run), "--num", "20", "--out", str(tmp_path / "e"), "--metrics", metrics]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_kid_needs_reference_features(digits_run, tmp_path, capsys, inception_weights):
    stats = tmp_path / "ref.npz"
    ReferenceStats(np.zeros(2048), np.eye(2048)).to_npz(stats)  # moments only, as other tools write them
    argv = ["eval", "--ckpt", str(digits_run), "--num", "20", "--out", str(tmp_path / "e"), "--metrics", "fid,kid"]
    assert main([*argv, "--ref-stats", str(stats), "--inception-weights", str(inception_weights)]) == 2
    assert "does not keep" in capsys.readouterr().err
