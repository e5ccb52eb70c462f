"""Evaluation during training: RUN/eval.csv and eval.png on fixed noise, exact across crashes and resumes,
a missing piece stops the run at the start, and the numbers equal those of `shortcut eval`."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from shortcut_models import checkpoints as ckpt
from shortcut_models.cli import main
from shortcut_models.config import build_config
from shortcut_models.evaluation.during_training import TrainingEvaluator, read_rows
from shortcut_models.experiments import build_trainer, train
from shortcut_models.inference import load_model

TOY = [
    "model_args.width=32",
    "model_args.depth=1",
    "batch_size=32",
    "log_every=50",
    "ckpt_every=150",
    "sample_steps=[1]",
    "logger=none",
    "eval_every=100",
    "eval_num=200",
    "eval_steps=[1,4]",
]


def toy(*extra):
    return build_config("checkerboard", None, None, [*TOY, *extra])


def rows_without_time(run):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in read_rows(run / "eval.csv")]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted toy run of 300 steps, evaluated at 100, 200 and 300."""
    run = tmp_path_factory.mktemp("straight") / "run"
    train(toy("steps=300"), run, progress=False)
    return run


def test_one_row_per_training_step_and_step_count(straight):
    rows = read_rows(straight / "eval.csv")
    assert [(int(r["step"]), int(r["steps"])) for r in rows] == [(s, n) for s in (100, 200, 300) for n in (1, 4)]
    assert list(rows[0]) == [
        "step",
        "steps",
        "nfe",
        "num",
        "cfg_scale",
        "swd",
        "swd_floor",
        "in_square",
        "in_square_data",
        "seconds",
    ]
    assert all(r["num"] == "200" for r in rows)
    assert all(0 < float(r["swd_floor"]) < float(r["swd"]) for r in rows)  # a 300-step toy is above the floor
    assert (straight / "eval.png").read_bytes()[:4] == b"\x89PNG"


def test_the_rows_are_those_of_shortcut_eval(straight, tmp_path):
    """Same code, same fixed noise: the last row equals `shortcut eval` on the final checkpoint."""
    evaluator = TrainingEvaluator.from_config(toy("steps=300"), straight)
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--ckpt",
                str(straight),
                "--steps",
                "1,4",
                "--num",
                "200",
                "--seed",
                str(evaluator.seed),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    offline = json.loads((out / "metrics.json").read_text())["rows"]
    during = [r for r in read_rows(straight / "eval.csv") if r["step"] == "300"]
    assert [float(r["swd"]) for r in during] == pytest.approx([r["swd"] for r in offline], rel=1e-5)  # 6 digits


def test_a_crash_and_resume_give_the_uninterrupted_rows(straight, tmp_path, monkeypatch):
    """Crash at step 250, after the evaluation at 200 but with the last checkpoint at 150: the resumed run
    drops the row of 200, recomputes it, and ends with the rows of the uninterrupted run.

    Rows compare exactly here and in the resume tests below: both runs repeat the same computations on
    this machine at this process's thread count (no test of this module leaves another one set), which
    gives the same bits on any machine."""
    run = tmp_path / "run"
    trainer = build_trainer(toy("steps=300"), run, progress=False)
    real = trainer.train_step

    def crash_at_250(step):
        if step == 250:
            raise RuntimeError("simulated crash")
        return real(step)

    monkeypatch.setattr(trainer, "train_step", crash_at_250)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.run()
    assert [int(r["step"]) for r in read_rows(run / "eval.csv")] == [100, 100, 200, 200]
    assert ckpt.step_of(ckpt.latest_checkpoint(run)) == 150
    train(toy("steps=300"), run, progress=False)
    assert rows_without_time(run) == rows_without_time(straight)


def test_a_longer_run_continues_the_curve(straight, tmp_path):
    run = tmp_path / "run"
    train(toy("steps=200"), run, progress=False)  # ends at 200: evaluated at 100 and 200
    train(toy("steps=300"), run, progress=False)  # resumes at 200
    assert rows_without_time(run) == rows_without_time(straight)


@pytest.mark.slow  # a training process killed with SIGKILL
def test_a_killed_run_resumes_to_the_same_rows(straight, tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "shortcut_models",
        "train",
        "--preset",
        "checkerboard",
        "--out",
        str(run),
        "--quiet",
        *TOY,
        "steps=300",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(r["step"] == "200" for r in read_rows(run / "eval.csv")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert main(["train", "--preset", "checkerboard", "--out", str(run), "--quiet", *TOY, "steps=300"]) == 0
    assert rows_without_time(run) == rows_without_time(straight)


def test_a_missing_piece_stops_the_run_at_the_start(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [
        "train",
        "--out",
        str(run),
        "--quiet",
        "model=DiT-Nano",
        "steps=2",
        "eval_metric=fid",
        "eval_ref_stats=/no/such/ref.npz",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "/no/such/ref.npz" in err
    assert not (run / "checkpoints").exists() and not (run / "metrics.csv").exists()
    assert (
        main(["train", "--out", str(run), "--quiet", "--preset", "checkerboard", "steps=2", "eval_metric=fd-digits"])
        == 2
    )
    assert "fd-digits" in capsys.readouterr().err


def test_fd_dinov2_during_training(tmp_path, nano_args, dinov2_weights, capsys):
    """eval_metric=fd-dinov2 with eval_dinov2_weights: RUN/eval.csv holds fd_dinov2; without the weights
    file the run stops at the start in one line."""
    ref = tmp_path / "ref.npz"
    argv = ["ref-stats", "--data", "digits", "--metric", "fd-dinov2", "--num", "8", "--quiet"]
    assert main([*argv, "--dinov2-weights", str(dinov2_weights), "--out", str(ref)]) == 0
    keys = [*nano_args, "steps=2", "eval_every=2", "eval_num=4", "eval_steps=[1]", "eval_metric=fd-dinov2"]
    keys.append(f"eval_ref_stats={ref}")
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--quiet", *keys]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "eval_dinov2_weights=FILE" in err
    assert not (run / "checkpoints").exists()
    assert main(["train", "--out", str(run), "--quiet", *keys, f"eval_dinov2_weights={dinov2_weights}"]) == 0
    rows = read_rows(run / "eval.csv")
    assert [(r["step"], r["steps"]) for r in rows] == [("2", "1")] and float(rows[0]["fd_dinov2"]) > 0


def test_digits_rows_hold_the_floor_and_the_class_accuracy(tmp_path, nano_args):
    run = tmp_path / "run"
    cfg = build_config("digits", None, None, [*nano_args, "steps=4", "eval_every=2", "eval_num=40", "eval_steps=[1,2]"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: one thread is fastest
    try:
        train(cfg, run, progress=False)
    finally:
        torch.set_num_threads(threads)  # the other tests of this module compare runs made at one thread count
    rows = read_rows(run / "eval.csv")
    assert [(r["step"], r["steps"]) for r in rows] == [("2", "1"), ("2", "2"), ("4", "1"), ("4", "2")]
    assert {"fd_digits", "fd_digits_floor", "class_accuracy"} <= set(rows[0])
    assert float(rows[0]["fd_digits_floor"]) == pytest.approx(4.25, abs=0.2)
    with open(run / "eval.csv", newline="") as fh:
        assert next(csv.reader(fh))[:6] == ["step", "steps", "nfe", "num", "cfg_scale", "fd_digits"]
    assert load_model(run, "cpu").step == 4


def test_evaluation_is_logged_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(toy("steps=100", "logger=tensorboard"), run, progress=False)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"eval/swd/steps_1", "eval/swd/steps_4", "train/loss"} <= tags
    (point,) = events.Scalars("eval/swd/steps_4")
    assert point.step == 100 and point.value == pytest.approx(float(read_rows(run / "eval.csv")[1]["swd"]), rel=1e-5)


@pytest.mark.slow  # a latent cache, the VAE decoder and Inception on the CPU
def test_fid_during_training_on_latents(tiny_latents, inception_weights, tmp_path):
    """The latent presets' path: FID of decoded samples against reference statistics, during training."""
    images, cache = tiny_latents
    ref, weights = tmp_path / "ref.npz", inception_weights
    assert (
        main(
            [
                "ref-stats",
                "--data",
                str(images),
                "--resolution",
                "32",
                "--inception-weights",
                str(weights),
                "--out",
                str(ref),
                "--quiet",
            ]
        )
        == 0
    )
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "--quiet",
                f"data=latents:{cache}",
                "model=DiT-Nano",
                "batch_size=8",
                "steps=2",
                "logger=none",
                "sample_steps=[1]",
                "class_conditional=false",
                "eval_every=1",
                "eval_num=4",
                "eval_steps=[1,2]",
                f"eval_ref_stats={ref}",
                f"eval_inception_weights={weights}",
            ]
        )
        == 0
    )
    rows = read_rows(run / "eval.csv")
    assert [(r["step"], r["steps"]) for r in rows] == [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
    assert all(float(r["fid"]) > 0 for r in rows) and "fid_floor" not in rows[0]
