"""Image training on digits with a tiny DiT: accumulation, bf16 path, signals, sheets, sampling CLI."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from shortcut_models import checkpoints as ckpt
from shortcut_models.cli import main
from shortcut_models.training import Trainer

SHEETS = "sample_steps=[1,2]"  # sample sheets after 1 and 2 steps, on top of NANO (tests/fixtures/runs.py)


@pytest.fixture
def nano(nano_config):
    """``nano(*extra, objective="shortcut")``: the tiny digits DiT-Nano run, sampling 1 and 2 steps."""
    return lambda *extra, objective="shortcut": nano_config(SHEETS, *extra, objective=objective)


def test_gradient_accumulation_matches_full_batch(tmp_path, nano):
    full = Trainer(nano("steps=1"), tmp_path / "a", progress=False)
    accum = Trainer(nano("steps=1", "grad_accum=4"), tmp_path / "b", progress=False)
    logs_full, logs_acc = full.train_step(0), accum.train_step(0)
    for k in ("loss", "loss_flow", "loss_self_consistency"):
        assert torch.allclose(logs_full[k], logs_acc[k], rtol=1e-5, atol=1e-7), k
    for (name, p), q in zip(full.model.named_parameters(), accum.model.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7), name


def test_bf16_autocast_path_matches_fp32_within_tolerance(tmp_path, nano):
    fp32 = Trainer(nano("steps=1"), tmp_path / "a", progress=False)
    bf16 = Trainer(nano("steps=1", "precision=bf16"), tmp_path / "b", progress=False)
    for tr in (fp32, bf16):  # give the zero-initialised head some weight so outputs are non-trivial
        torch.manual_seed(1)
        for p in tr.model.parameters():
            p.data.add_(0.02 * torch.randn_like(p))
        tr.ema.module.load_state_dict(tr.model.state_dict())
    a, b = fp32.train_step(0), bf16.train_step(0)
    assert torch.isfinite(b["loss"]) and abs(float(a["loss"]) - float(b["loss"])) < 0.05 * float(a["loss"])


def test_d_input_matters_after_training_and_sheets_are_written(tmp_path, nano):
    trainer = Trainer(nano("steps=3"), tmp_path, progress=False)
    trainer.run()
    model = trainer.ema.module
    x = torch.randn(4, 1, 8, 8)
    t, y = torch.full((4,), 0.5), torch.arange(4)
    with torch.no_grad():
        assert not torch.allclose(model(x, t, torch.full((4,), 1.0), y), model(x, t, torch.full((4,), 1 / 128), y))
    sheet_dir = trainer.samples_dir.parent
    assert {p.name for p in sheet_dir.iterdir()} == {"steps_001.png", "steps_002.png", "sheet.png"}


def test_sample_cli_images_deterministic_with_classes(tmp_path, nano_args):
    """The same command twice gives the same images bit for bit (the same computation in this process, so
    on any machine); class labels, guidance and output formats."""
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--quiet", *nano_args, SHEETS, "steps=2"]) == 0
    args = ["sample", "--ckpt", str(run), "--steps", "2", "--num", "12", "--seed", "5"]
    assert main([*args, "--class", "7", "--out", str(tmp_path / "a.npz")]) == 0
    assert main([*args, "--class", "7", "--out", str(tmp_path / "b.npz")]) == 0
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a["arr_0"].dtype == np.uint8 and a["arr_0"].shape == (12, 8, 8, 1)
    assert np.array_equal(a["arr_0"], b["arr_0"]) and (a["labels"] == 7).all()
    assert main([*args, "--cfg-scale", "2.0", "--out", str(tmp_path / "c.npz")]) == 0
    assert np.load(tmp_path / "c.npz")["labels"].tolist() == [i % 10 for i in range(12)]
    assert main([*args, "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert main([*args, "--class", "10", "--out", str(tmp_path / "d.npz")]) == 2
    assert main([*args, "--out", str(tmp_path / "d.jpg")]) == 2


@pytest.mark.slow  # a training process stopped by a signal
def test_sigterm_saves_a_checkpoint_and_exits_with_the_stop_code(tmp_path, nano_args):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "shortcut_models",
        "train",
        "--out",
        str(run),
        "--quiet",
        *nano_args,
        SHEETS,
        "steps=100000",
        "ckpt_every=100000",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics.csv").exists():
        time.sleep(0.2)
    assert (run / "metrics.csv").exists(), proc.stderr.read() if proc.poll() is not None else "no progress"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err  # cli.EXIT_STOPPED: a scheduler may requeue the run
    assert "stopped by signal" in err
    latest = ckpt.latest_checkpoint(run)
    assert latest is not None and int(latest.name.split("_")[-1]) >= 2
    assert json.loads((latest / "config.json").read_text())["training"]["steps"] == 100000
