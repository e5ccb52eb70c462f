"""iMF (improved MeanFlow): its draws and rows, its cost model, the trainer building the network with the
guidance input, and `shortcut train --objective imf` then `shortcut sample --cfg-scale W --steps 1` end to end
(the official code's numbers: tests/objectives/test_imf_reference.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shortcut_models.cli import main
from shortcut_models.config import build_config
from shortcut_models.errors import UserError
from shortcut_models.inference import load_model
from shortcut_models.objectives import ImprovedMeanFlow, build_objective
from shortcut_models.objectives.imf import guidance_scales
from shortcut_models.training.networks import build_networks


def field(x, t, d, y, guidance=None):
    return torch.tanh(x) * (1 + t[:, None]) + d[:, None] + (0 if guidance is None else guidance[:, :1] / 10)


def test_the_guidance_scale_follows_its_power_law():
    u = torch.linspace(0, 0.999999, 1001, dtype=torch.float64)
    w = guidance_scales(u, 7.0, 1.0)
    assert w.min() == 1.0 and w.max() < 8.0
    torch.testing.assert_close(torch.log(w).diff(), torch.full((1000,), math.log(8) * 0.999999 / 1e3, dtype=w.dtype))
    w2 = guidance_scales(u, 7.0, 2.0)  # density ~ w^-2: the cumulative distribution (1 - 1/w) / (1 - 1/8)
    torch.testing.assert_close((1 - 1 / w2) / (1 - 1 / 8), u)
    torch.testing.assert_close(guidance_scales(u, 7.0, 1.0 + 1e-9), w, rtol=1e-6, atol=1e-6)  # continuous in beta


def test_rows_draws_and_dropout():
    obj = build_objective("imf", 10, {"class_dropout": 0.3})
    assert obj.kind_rows(16) == (8, 8) and obj.kind_rows(15) == (8, 7)  # int(B * flow_share) flow rows, as theirs
    x1, y = torch.randn(64, 3), torch.randint(0, 10, (64,))
    tg = obj.targets(field, x1, y, torch.Generator().manual_seed(0))
    interval = tg.kind == 0
    assert interval[:32].all() and not interval[32:].any()
    assert (tg.d[interval] > 0).all() and (tg.d[~interval] == 0).all() and (tg.t + tg.d <= 1).all()
    scale, lo, hi = tg.guidance.unbind(1)
    assert (scale >= 1).all() and (scale < 8).all()
    assert ((lo[interval] < 0.5) & (hi[interval] >= 0.5)).all()
    assert (lo[~interval] == 0).all() and (hi[~interval] == 1).all()
    dropped = tg.y == 10  # the leading rows in the official order (flow rows first): rows 32, 33, ..., 63, 0, 1, ...
    official = (torch.arange(64) - 32) % 64
    assert 0 < dropped.sum() < 32 and torch.equal(dropped, official < dropped.sum())
    parts = tg.split(2)  # gradient accumulation keeps each row's guidance; objectives without one keep None
    assert torch.equal(torch.cat([p.guidance for p in parts]), tg.guidance)
    plain = build_objective("flow", 10).targets(field, x1, y, torch.Generator().manual_seed(0))
    assert plain.guidance is None and all(p.guidance is None for p in plain.split(2))
    uncond = obj.targets(field, x1, None, torch.Generator().manual_seed(0))
    assert (uncond.guidance[:, 0] == 1).all() and (uncond.y == 10).all()


def test_cost_model():
    assert ImprovedMeanFlow(num_classes=10).passes_per_row(64) == (4.0, 1.0)  # 1 + 2 guided + 2 * 1/2 product
    assert ImprovedMeanFlow(num_classes=0).passes_per_row(64) == (3.0, 1.0)
    assert ImprovedMeanFlow(num_classes=10, flow_share=1.0).passes_per_row(64) == (3.0, 1.0)


def test_the_trainer_builds_the_network_with_the_guidance_input(nano_config):
    cfg = nano_config(objective="imf")
    nets = build_networks(cfg, (1, 8, 8), 10, torch.device("cpu"), teacher=False, guidance_input=True)
    assert nets.model.guidance_input and nets.ema.module.guidance_input
    assert not build_networks(cfg, (1, 8, 8), 10, torch.device("cpu"), teacher=False).model.guidance_input
    off = nano_config("model_args.guidance_input=false", objective="imf")
    with pytest.raises(UserError, match="remove guidance_input=false"):
        build_networks(off, (1, 8, 8), 10, torch.device("cpu"), teacher=False, guidance_input=True)


@pytest.fixture(scope="module")
def imf_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("imf")
    args = [
        "model=DiT-Nano",
        "batch_size=16",
        "log_every=2",
        "warmup_steps=0",
        "logger=none",
        "sample_steps=[1]",
        "eval_every=0",
    ]
    assert (
        main(["train", "--preset", "digits", "--objective", "imf", "--out", str(out), "--quiet", "steps=4", *args]) == 0
    )
    return out


def test_train_then_sample_in_one_step_with_the_scale_as_input(imf_run, tmp_path, monkeypatch):
    loaded = load_model(imf_run)
    assert loaded.spec.network["args"]["guidance_input"] is True and loaded.objective.name == "imf"
    assert loaded.passes_per_step(4.0) == 1
    calls = []
    forward = type(loaded.model).forward

    def counted(self, x, t, d, y, guidance=None):
        calls.append((x.shape[0], None if guidance is None else guidance[0].tolist()))
        return forward(self, x, t, d, y, guidance)

    monkeypatch.setattr(type(loaded.model), "forward", counted)
    monkeypatch.setattr("shortcut_models.cli.sample.load_model", lambda *a, **k: loaded)
    out = tmp_path / "s.npz"
    argv = ["sample", "--ckpt", str(imf_run), "--steps", "1", "--num", "6", "--cfg-scale", "4", "--out", str(out)]
    assert main([*argv, "--cfg-interval", "0.35,0.6"]) == 0
    assert calls == [(6, pytest.approx([4.0, 0.35, 0.6]))]  # one pass of the 6 rows: no unconditional branch
    data = np.load(out)
    assert data["arr_0"].shape[0] == 6
    assert data["labels"].tolist() == [0, 1, 2, 3, 4, 5]


def test_eval_feeds_the_cfg_interval_too(imf_run, tmp_path, monkeypatch):
    loaded = load_model(imf_run)
    calls = []
    forward = type(loaded.model).forward

    def counted(self, x, t, d, y, guidance=None):
        calls.append(None if guidance is None else guidance[0].tolist())
        return forward(self, x, t, d, y, guidance)

    monkeypatch.setattr(type(loaded.model), "forward", counted)
    monkeypatch.setattr("shortcut_models.cli.evaluate.load_model", lambda *a, **k: loaded)
    argv = ["eval", "--ckpt", str(imf_run), "--steps", "1,2", "--num", "20", "--cfg-scale", "2", "--quiet"]
    assert main([*argv, "--cfg-interval", "0.35,0.6", "--out", str(tmp_path / "e")]) == 0
    assert len(calls) == 3 and all(g == pytest.approx([2.0, 0.35, 0.6]) for g in calls)


def test_cfg_interval_needs_a_model_with_the_guidance_input(tmp_path, nano_args, capsys):
    run = tmp_path / "flow"
    assert (
        main(
            [
                "train",
                "--preset",
                "digits",
                "--objective",
                "flow",
                "--out",
                str(run),
                "--quiet",
                "steps=1",
                "eval_every=0",
                *nano_args,
            ]
        )
        == 0
    )
    argv = ["sample", "--ckpt", str(run), "--steps", "1", "--num", "2", "--out", str(tmp_path / "s.npz")]
    assert main([*argv, "--cfg-interval", "0.2,0.7"]) == 2
    assert "needs a model trained with the guidance input" in capsys.readouterr().err
    assert main([*argv, "--cfg-interval", "0.7,0.2"]) == 2  # refused by the argument type
    capsys.readouterr()
    evaluate = ["eval", "--ckpt", str(run), "--steps", "1", "--num", "4", "--quiet", "--out", str(tmp_path / "e")]
    assert main([*evaluate, "--cfg-interval", "0.2,0.7"]) == 2
    assert "needs a model trained with the guidance input" in capsys.readouterr().err


def test_a_config_names_the_objective_and_its_official_knobs():
    cfg = build_config("digits", "imf")
    args = cfg.resolved_objective_args()
    assert (args["flow_share"], args["cfg_max"], args["cfg_beta"], args["class_dropout"]) == (0.5, 7.0, 1.0, 0.1)
    assert (args["time_sampler"], args["loss_weight"], args["adaptive_eps"], args["target_network"]) == (
        "logit-normal",
        "adaptive",
        0.01,
        "online",
    )
