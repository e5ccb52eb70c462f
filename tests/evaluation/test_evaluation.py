"""`shortcut eval` and `shortcut ref-stats` on images: files, step counts, metrics and errors."""

import json

import numpy as np
import pytest
import torch

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
    """The floor of fd-digits from the two files of `shortcut ref-stats`: the same features of the same images in
    the same batches (evaluation.feature_stats) as digits_metric's floor, in this process, written as float64:
    equal on any machine up to the float64 round trip (1e-9 is ample)."""
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
    """`--metrics fd-digits,is,kid,prc,nn1`: each set measure equals the function applied to the saved samples
    (nn1 up to one of the 120 pooled points: the saved samples are rounded to uint8). The tolerances are those
    of that rounding (measured: IS spread 7.2e-4, KID 2.7e-4, the same on an emulated SSE-only CPU); nn1's floor is the
    same computation on the same images in this process, so it is compared exactly."""
    import torch

    from shortcut_models.data.digits import load_digits
    from shortcut_models.evaluation import digits_metric
    from shortcut_models.metrics import inception_score, kernel_distance, precision_recall
    from shortcut_models.metrics.one_nn import one_nn_accuracies, one_nn_accuracy

    out = tmp_path / "eval"
    argv = ["eval", "--ckpt", str(digits_run), "--steps", "1", "--num", "60", "--batch-size", "25"]
    assert main([*argv, "--metrics", "fd-digits,is,kid,prc,nn1", "--save-samples", "--out", str(out), "--quiet"]) == 0
    row = json.loads((out / "metrics.json").read_text())["rows"][0]
    images = torch.from_numpy(np.load(row["samples_file"])["arr_0"]).permute(0, 3, 1, 2).float() / 127.5 - 1
    metric = digits_metric()
    features, reference = metric.extractor(images), torch.from_numpy(metric.reference.features)
    assert reference.shape == (1497, metric.reference.mu.shape[0])  # every train image
    assert (row["is"], row["is_std"]) == pytest.approx(inception_score(metric.logits(images)), rel=1e-3)
    assert (row["kid"], row["kid_std"]) == pytest.approx(kernel_distance(features, reference), rel=1e-3)
    assert (row["precision"], row["recall"]) == pytest.approx(precision_recall(features, reference), abs=1 / 60)
    assert row["precision"] < 0.5 and row["kid"] > 0  # an untrained model: most samples are failures
    train, test = load_digits("train")[0], load_digits("test")[0]
    real = train[torch.linspace(0, 1496, 60).round().long()]  # 60 train images spread over the split
    sides = one_nn_accuracies(images, real)
    assert (row["nn1_sample_accuracy"], row["nn1_real_accuracy"]) == pytest.approx(sides, abs=2 / 60)
    assert row["nn1_accuracy"] == pytest.approx((row["nn1_sample_accuracy"] + row["nn1_real_accuracy"]) / 2)
    assert row["nn1_accuracy"] > 0.9  # the untrained model's samples are easy to tell from digits
    floor = sum(one_nn_accuracy(test, train[i::5]) for i in range(5)) / 5
    assert row["nn1_accuracy_floor"] == floor and 0.45 < floor < 0.55
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert all(k in header for k in ("is", "kid", "precision", "recall", "nn1_accuracy", "nn1_accuracy_floor"))


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ("fid,fd-digits", "more than one distance"),
        ("fd-digits,bogus", "unknown metric 'bogus'"),
        ("fid,nn1", "nn1 (the 1-nearest-neighbour test in pixels) compares with the digits train images"),
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


def test_fd_dinov2_reference_statistics_and_eval(tmp_path, digits_run, dinov2_weights):
    """ref-stats and eval in DINOv2 features with a local weights file: the statistics record their feature
    space and keep features; eval reports fd_dinov2 (the FD of the saved samples' features against them),
    kid and prc in the same space.

    Equal here, but not bit for bit on every machine: eval rounds its float samples to pixels in float32
    (images.to_uint8_rgb), the saved file rounds them in float64 (images.to_uint8), and a sample that lands
    within rounding of a half level (about 6 pixels in a million) becomes another pixel in one of them. One
    level in one pixel moves this FD by up to 7e-5 (relative, measured); dropping one of the ten samples
    moves it by 3.5e-2. Hence 5e-4."""
    from shortcut_models.metrics import DinoV2Features, FeatureStats, frechet_distance_from_stats

    ref = tmp_path / "ref.npz"
    argv = ["ref-stats", "--data", "digits", "--metric", "fd-dinov2", "--num", "12", "--out", str(ref)]
    assert main([*argv, "--dinov2-weights", str(dinov2_weights), "--quiet"]) == 0
    reference = ReferenceStats.load_npz(ref)
    assert reference.extractor == "fd-dinov2" and reference.mu.shape == (64,) and reference.features.shape == (12, 64)
    out = tmp_path / "eval"
    argv = ["eval", "--ckpt", str(digits_run), "--steps", "1", "--num", "10", "--metrics", "fd-dinov2,kid,prc"]
    argv += ["--ref-stats", str(ref), "--dinov2-weights", str(dinov2_weights), "--save-samples"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    row = result["rows"][0]
    assert result["metric"] == "fd-dinov2" and {"kid", "precision", "recall"} <= set(row)
    images = torch.from_numpy(np.load(row["samples_file"])["arr_0"]).permute(0, 3, 1, 2).float() / 127.5 - 1
    stats = FeatureStats().update(DinoV2Features(dinov2_weights)(images))
    assert row["fd_dinov2"] == pytest.approx(frechet_distance_from_stats(stats, reference), rel=5e-4)
    assert row["fd_dinov2"] > 0


def _dinov2_error(tmp_path, case: str) -> list[str]:
    """argv of the refused fd-dinov2 case ``case`` (files made in tmp_path; RUN: the digits run, W: the
    tiny weights file)."""
    from shortcut_models.metrics.dinov2 import random_state_dict

    dinov2_stats, fid_stats = tmp_path / "dinov2.npz", tmp_path / "fid.npz"
    ReferenceStats(np.zeros(64), np.eye(64), extractor="fd-dinov2").to_npz(dinov2_stats)
    ReferenceStats(np.zeros(2048), np.eye(2048)).to_npz(fid_stats)  # no extractor recorded: Inception's
    wider = tmp_path / "wider.pth"
    torch.save(random_state_dict(width=128, depth=1, grid=4), wider)
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "other.pth")
    ref_stats = ["ref-stats", "--data", "digits", "--metric", "fd-dinov2", "--out", str(tmp_path / "r.npz")]
    eval_ = ["eval", "--ckpt", "RUN", "--steps", "1", "--num", "4", "--out", str(tmp_path / "e")]
    return {
        "ref-stats without weights": ref_stats,
        "eval without weights": [*eval_, "--metric", "fd-dinov2", "--ref-stats", str(dinov2_stats)],
        "missing file": [*ref_stats, "--dinov2-weights", str(tmp_path / "none.pth")],
        "wrong file": [*ref_stats, "--dinov2-weights", str(tmp_path / "other.pth")],
        "fid statistics": [*eval_, "--metric", "fd-dinov2", "--ref-stats", str(fid_stats), "--dinov2-weights", "W"],
        "dinov2 statistics for fid": [*eval_, "--metric", "fid", "--ref-stats", str(dinov2_stats)],
        "other width": [
            *eval_,
            "--metric",
            "fd-dinov2",
            "--ref-stats",
            str(dinov2_stats),
            "--dinov2-weights",
            str(wider),
        ],
        "inception score": [
            *eval_,
            "--metrics",
            "fd-dinov2,is",
            "--ref-stats",
            str(dinov2_stats),
            "--dinov2-weights",
            "W",
        ],
        "convert": [
            "ref-stats",
            "--convert",
            str(fid_stats),
            "--metric",
            "fd-dinov2",
            "--out",
            str(tmp_path / "c.npz"),
        ],
    }[case]


DINOV2_ERRORS = {
    "ref-stats without weights": "pass --dinov2-weights FILE",
    "eval without weights": "dinov2_vitl14_pretrain.pth",
    "missing file": "DINOv2 weights file not found",
    "wrong file": "cannot load DINOv2 weights",
    "fid statistics": "holds statistics of Inception-v3 (fid) features, not DINOv2 (fd-dinov2) ones",
    "dinov2 statistics for fid": "holds statistics of DINOv2 (fd-dinov2) features, not Inception-v3 (fid) ones",
    "other width": "holds 64-d features, the fd-dinov2 network 128-d ones",
    "inception score": "Inception Score (is) needs Inception-v3's classifier",
    "convert": "--metric fd-dinov2 applies to --data",
}


@pytest.mark.parametrize("case", list(DINOV2_ERRORS))
def test_fd_dinov2_refusals_exit_2_in_one_line(case, tmp_path, digits_run, dinov2_weights, capsys):
    names = {"RUN": str(digits_run), "W": str(dinov2_weights)}
    argv = [names.get(a, a) for a in _dinov2_error(tmp_path, case)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and DINOV2_ERRORS[case] in err, err
