"""Trainer: exact resume, atomic checkpoints, NaN guard, resume config check, EMA as teacher, and a few
steps on synthetic latent-shaped data (the GPU benchmarks' source)."""

import json

import pytest
import torch

from shortcut_models import checkpoints as ckpt
from shortcut_models.config import build_config
from shortcut_models.errors import TrainingDiverged, UserError, WriteFailed
from shortcut_models.training import Trainer

TINY = [
    "model_args.width=32",
    "model_args.depth=1",
    "batch_size=32",
    "log_every=5",
    "ema_decay=0.9",
    "sample_steps=[1]",
    "logger=none",
]


def tiny_config(*extra, objective="shortcut"):
    return build_config("checkerboard", objective, None, [*TINY, *extra])


@pytest.mark.parametrize("objective", ["shortcut", "flow"])
def test_stop_and_resume_is_bit_identical(tmp_path, objective, assert_same_state):
    """Resumed at step 10, a run ends as the uninterrupted one bit for bit: the same steps computed in this
    process (same shapes and thread count), so the comparison is exact on any machine."""
    straight = Trainer(tiny_config("steps=20", "ckpt_every=100", objective=objective), tmp_path / "a", progress=False)
    straight.run()
    first = Trainer(tiny_config("steps=10", "ckpt_every=100", objective=objective), tmp_path / "b", progress=False)
    first.run()
    resumed = Trainer(tiny_config("steps=20", "ckpt_every=100", objective=objective), tmp_path / "b", progress=False)
    assert resumed.step == 10
    resumed.run()
    assert_same_state(straight, resumed)
    assert resumed.ema.num_updates == straight.ema.num_updates == 20


def test_checkpoint_layout_and_pruning(tmp_path):
    trainer = Trainer(tiny_config("steps=12", "ckpt_every=4", "keep_checkpoints=2"), tmp_path, progress=False)
    final = trainer.run()
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step_00000008", "step_00000012"]
    assert final.name == "step_00000012"
    assert {p.name for p in final.iterdir()} == {"config.json", "model.safetensors", "ema.safetensors", "state.pt"}
    assert json.loads((final / "config.json").read_text())["training"]["steps"] == 12
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step,loss,loss_self_consistency,loss_flow,grad_norm,lr")
    assert len(lines) == 1 + 12 // 5 + 1  # rows at 5, 10 and the final step


def test_crash_during_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(tiny_config("steps=4", "ckpt_every=100"), tmp_path, progress=False)
    good = trainer.run()
    before = (good / "ema.safetensors").read_bytes()
    trainer.cfg.steps = 8
    calls = {"n": 0}
    real = ckpt.save_file

    def failing(tensors, filename):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real(tensors, filename)

    monkeypatch.setattr(ckpt, "save_file", failing)
    with pytest.raises(WriteFailed, match=f"disk full; the last intact checkpoint is {good}"):
        trainer.run()
    assert ckpt.latest_checkpoint(tmp_path) == good
    assert (good / "ema.safetensors").read_bytes() == before
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [good.name]  # the partial one is removed
    monkeypatch.setattr(ckpt, "save_file", real)
    again = Trainer(tiny_config("steps=8", "ckpt_every=100"), tmp_path, progress=False)
    assert again.step == 4
    assert again.run().name == "step_00000008"


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    trainer = Trainer(tiny_config("steps=30", "ckpt_every=10"), tmp_path, progress=False)
    real_batch = trainer.source.batch

    def poisoned(step, batch_size, seed):
        x, y = real_batch(step, batch_size, seed)
        return (x * float("nan"), y) if step == 13 else (x, y)

    trainer.source.batch = poisoned
    with pytest.raises(TrainingDiverged, match="NaN"):
        trainer.run()
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "step_00000010"
    from safetensors.torch import load_file

    assert all(torch.isfinite(v).all() for v in load_file(str(latest / "ema.safetensors")).values())


def test_resume_with_a_different_config_is_refused(tmp_path):
    Trainer(tiny_config("steps=2"), tmp_path, progress=False).run()
    with pytest.raises(UserError, match="different config"):
        Trainer(tiny_config("steps=4", "lr=0.1"), tmp_path, progress=False)
    Trainer(tiny_config("steps=4"), tmp_path, progress=False)  # a longer run is fine


def test_a_resume_reads_its_checkpoint_config_once(tmp_path, monkeypatch):
    """The run is resolved before it is built: one read of config.json decides the step input, the check
    against the run asked for and the learning-rate note."""
    Trainer(tiny_config("steps=2"), tmp_path, progress=False).run()
    reads = []
    real = ckpt.read_config
    monkeypatch.setattr(ckpt, "read_config", lambda path: reads.append(path) or real(path))
    resumed = Trainer(tiny_config("steps=4"), tmp_path, progress=False)
    assert resumed.step == 2 and reads == [resumed.last_checkpoint]


def test_trainer_uses_ema_as_teacher(tmp_path):
    trainer = Trainer(tiny_config("steps=1"), tmp_path, progress=False)
    seen = []
    real = trainer.objective.targets

    def spy(networks, *args, **kwargs):
        seen.append(networks)
        return real(networks, *args, **kwargs)

    trainer.objective.targets = spy
    trainer.train_step(0)
    assert trainer.objective.recipe.target_network == "ema"
    assert seen[0].ema is trainer.ema.module and seen[0].online is trainer.model and seen[0].teacher is None
    assert trainer.objective.recipe.target_net(seen[0]) is trainer.ema.module
    assert not any(p.requires_grad for p in trainer.ema.module.parameters())


def test_trainer_runs_on_synthetic_latent_shaped_data(tmp_path):
    cfg = build_config(
        "celebahq256",
        "shortcut",
        None,
        [
            "model=DiT-Nano",
            "data=synthetic:4x8x8",
            "batch_size=16",
            "logger=none",
            "steps=3",
            "device=cpu",
            "precision=fp32",
        ],
    )
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    losses = [float(trainer.train_step(step)["loss"]) for step in range(3)]
    assert all(loss == loss and loss > 0 for loss in losses)


def _rows(run) -> list[dict[str, str]]:
    """metrics.csv as rows, without the columns that measure this machine (throughput, memory)."""
    import csv

    with open(run / "metrics.csv", newline="") as fh:
        return [
            {k: v for k, v in r.items() if k not in ("samples_per_sec", "max_memory_gb")} for r in csv.DictReader(fh)
        ]


class _Killed(BaseException):
    """What kill -9 leaves on the disk: the rows and checkpoints written so far, nothing after."""


@pytest.mark.parametrize("how", ["killed", "stopped by SIGTERM"])
def test_a_resumed_run_logs_the_rows_of_the_uninterrupted_one(tmp_path, how):
    """Interrupted inside a logging interval (rows every 4 steps, a checkpoint at 10; killed at step 14, after
    the row of step 12, or stopped by a signal at step 11), the resumed run's metrics.csv equals the
    uninterrupted run's row by row: the checkpoint keeps the open interval's sums, so the row of step 12
    averages steps 9-12 in both. Same process, same computations: the values are equal exactly."""
    import signal as signals

    config = tiny_config("steps=20", "ckpt_every=10", "log_every=4")
    Trainer(config, tmp_path / "straight", progress=False).run()
    first = Trainer(config, tmp_path / "resumed", progress=False)
    real_step = first.train_step

    def interrupted(step):
        if how == "killed" and step == 14:
            raise _Killed
        logs = real_step(step)
        if how != "killed" and step == 10:  # the 11th step: the signal arrives during it
            first._on_signal(signals.SIGTERM, None)
        return logs

    first.train_step = interrupted
    if how == "killed":
        with pytest.raises(_Killed):
            first.run()
        assert [r["step"] for r in _rows(tmp_path / "resumed")] == ["4", "8", "12"]
    else:
        first.run()
        assert first.step == 11 and [r["step"] for r in _rows(tmp_path / "resumed")] == ["4", "8"]
    resumed = Trainer(config, tmp_path / "resumed", progress=False)
    assert resumed.step == (10 if how == "killed" else 11)
    resumed.run()
    straight, again = _rows(tmp_path / "straight"), _rows(tmp_path / "resumed")
    assert [r["step"] for r in straight] == ["4", "8", "12", "16", "20"]
    for a, b in zip(straight, again, strict=True):
        assert a == b
