"""SoFlow's targets in closed form for fixed noise, its limits, its loss, its cost model, and its command line
(the comparison with the authors' code is tests/objectives/test_soflow_reference.py)."""

import math

import numpy as np
import pytest
import torch

from shortcut_models import checkpoints as ckpt
from shortcut_models import path
from shortcut_models.cli import main
from shortcut_models.inference import load_model
from shortcut_models.objectives import Progress, SoFlow
from shortcut_models.objectives.soflow import guidance_decay, ratio_at

B, DIM = 16, 3


def batch(seed=0, conditional=False, classes=4):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(B, DIM, generator=g, dtype=torch.float64)
    x0 = torch.randn(B, DIM, generator=g, dtype=torch.float64)
    y = torch.arange(B) % classes if conditional else None
    return x0, x1, y, torch.Generator().manual_seed(seed + 1)


def linear_net(x, t, d, y):
    """u = 0.5 x + 0.3 t - 0.7 d + 0.1 y: a network whose every value is known in closed form."""
    return 0.5 * x + (0.3 * t - 0.7 * d + 0.1 * y)[:, None].to(x.dtype)


@pytest.fixture
def no_path_eps(monkeypatch):
    monkeypatch.setattr(path, "EPS", 0.0)


def test_flow_rows_without_guidance_are_flow_matching_at_d_zero():
    """Unconditional: the trailing 75% of rows regress the path velocity at d = 0, at logit-normal times
    sigmoid(0.2 + n), with error scale 1; the network is never asked for them."""
    x0, x1, y, gen = batch()
    objective = SoFlow()
    tg = objective.targets(linear_net, x1, y, gen, Progress(0, 10), x0=x0)
    nc = objective.kind_rows(B)[0]
    assert nc == 4 and tg.kind.tolist() == [0] * 4 + [1] * 12  # the consistency rows lead
    g = torch.Generator().manual_seed(1)  # after the given noise: the consistency rows' two times, then these
    torch.randn(4, generator=g), torch.randn(4, generator=g)
    n = torch.randn(12, generator=g).double()
    torch.testing.assert_close(tg.t[nc:], torch.sigmoid(0.2 + n).float(), rtol=1e-6, atol=1e-7)
    assert (tg.d[nc:] == 0).all() and (tg.scale[nc:] == 1).all()
    torch.testing.assert_close(tg.v[nc:], path.velocity(x0, x1)[nc:], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tg.x_t, path.interpolate(x0, x1, tg.t), rtol=1e-12, atol=1e-12)


@pytest.mark.usefixtures("no_path_eps")
def test_consistency_target_of_a_known_network():
    """Consistency rows: a start t, an end t + d (d >= 1e-4), the middle point a share r of the way (its gap at
    least 1e-4: r_l = max(r d, 1e-4) / d), and the target r_l V + (1 - r_l) u(x_t + r_l d V, t + r_l d, (1 - r_l) d)
    with V = v (unguided), r the schedule's share at this step, the error scale 1 / r_l; written out for a linear
    network (seed 2 holds a row whose gap is the smallest, 1e-4, beside rows where it is r d)."""
    x0, x1, y, gen = batch(2)
    objective = SoFlow()
    progress = Progress(4, 10)
    tg = objective.targets(linear_net, x1, y, gen, progress, x0=x0)
    nc = objective.kind_rows(B)[0]
    r = 0.1 * (0.002 / 0.1) ** 0.4
    t, d = tg.t[:nc].double(), tg.d[:nc].double()
    assert (d >= 1e-4 - 1e-7).all() and (t + d <= 1 + 1e-6).all()
    assert (d * r < 1e-4).any() and (d * r > 1e-4).any()
    share = torch.clamp(r * d, min=1e-4) / d
    v = path.velocity(x0, x1)[:nc]
    x_l = tg.x_t[:nc] + (share * d)[:, None] * v
    u_l = 0.5 * x_l + (0.3 * (t + share * d) - 0.7 * ((1 - share) * d).clamp(min=0) + 0.1 * 0)[:, None]
    want = share[:, None] * v + (1 - share)[:, None] * u_l
    torch.testing.assert_close(tg.v[:nc], want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tg.scale[:nc], 1 / share, rtol=1e-12, atol=0)
    # not the plain velocity: the network's own solution from the middle point carries most of the target
    assert (tg.v[:nc] - v).abs().max() > 0.1


@pytest.mark.usefixtures("no_path_eps")
def test_the_exact_flow_map_is_a_fixed_point():
    """Data of one point m: the exact average velocity from x at t is (m - x) / (1 - t) whatever d. For that network
    every target (flow rows and consistency rows, guided or not) is the network's own output, and the loss is 0."""
    m = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)

    def exact(x, t, d, y):
        return (m - x) / (1 - t.to(x.dtype))[:, None]

    x0, _, _, gen = batch(3)
    x1 = m.expand(B, DIM).clone()
    for objective in (SoFlow(), SoFlow.from_knobs(ratio_schedule="constant", ratio_end=0.5)):
        tg = objective.targets(exact, x1, None, gen, Progress(2, 5), x0=x0)
        torch.testing.assert_close(tg.v, exact(tg.x_t, tg.t, tg.d, tg.y), rtol=1e-10, atol=1e-10)


def test_the_whole_interval_as_middle_point_gives_the_path_velocity():
    """r = 1: the middle point is the end, so the consistency target is the (guided) velocity itself, whatever the
    network (the network is only asked about a step of size 0 at the end)."""
    x0, x1, y, gen = batch(4)
    objective = SoFlow.from_knobs(ratio_schedule="constant", ratio_end=1.0)
    tg = objective.targets(linear_net, x1, y, gen, Progress(0, 1), x0=x0)
    nc = objective.kind_rows(B)[0]
    torch.testing.assert_close(tg.v[:nc], path.velocity(x0, x1)[:nc], rtol=1e-12, atol=1e-12)
    assert (tg.scale[:nc] == 1).all()


def test_guided_targets_in_closed_form():
    """Class-conditional, guidance 3, mix 0.25: on a kept flow row V = v + g(t) 2 (v - v_u) with error scale 0.25
    (v_u the null-label velocity of the network at d = 0); on a kept consistency row the guided velocity is mixed,
    0.25 V + 0.75 v_c, and moves the middle point; a dropped row is unguided."""
    classes = 4
    x0, x1, y, gen = batch(5, conditional=True, classes=classes)
    objective = SoFlow(num_classes=classes, class_dropout=0.3)
    progress = Progress(0, 10)
    tg = objective.targets(linear_net, x1, y, gen, progress, x0=x0)
    nc = objective.kind_rows(B)[0]
    kept = tg.y != classes
    assert kept[nc:].any() and (~kept[nc:]).any() and kept[:nc].any()
    v = path.velocity(x0, x1)
    zero = torch.zeros_like(tg.t)  # the network gets the float32 times of the targets, as in the objective
    v_u = linear_net(tg.x_t, tg.t, zero, torch.full_like(tg.y, classes))
    v_c = linear_net(tg.x_t, tg.t, zero, y)
    t = tg.t.double()
    guided = v + (guidance_decay(t, 0.2) * 2.0)[:, None] * (v - v_u)
    want = torch.where(kept[:, None], guided, v)
    torch.testing.assert_close(tg.v[nc:], want[nc:], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tg.scale[nc:], torch.where(kept[nc:], 0.25, 1.0).double())
    mixed = torch.where(kept[:, None], 0.25 * guided + 0.75 * v_c, v)[:nc]
    d = tg.d[:nc].double()
    gap = torch.clamp(0.1 * d, min=1e-4)
    x_l = tg.x_t[:nc] + gap[:, None] * mixed
    u_l = linear_net(x_l, t[:nc] + gap, d - gap, tg.y[:nc])
    share = (gap / d)[:, None]
    torch.testing.assert_close(tg.v[:nc], share * mixed + (1 - share) * u_l, rtol=1e-12, atol=1e-12)


def test_ratio_schedules_and_guidance_decay():
    assert ratio_at("exponential", 0.1, 0.002, Progress(0, 100)) == 0.1
    assert math.isclose(ratio_at("exponential", 0.1, 0.002, Progress(50, 100)), math.sqrt(0.1 * 0.002))
    assert math.isclose(ratio_at("linear", 0.1, 0.002, Progress(50, 100)), 0.051)
    assert math.isclose(ratio_at("cosine", 0.1, 0.002, Progress(50, 100)), 0.051)
    assert math.isclose(ratio_at("cosine", 0.1, 0.002, Progress(0, 100)), 0.1)
    assert ratio_at("constant", 0.1, 0.002, Progress(0, 100)) == 0.002
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    g = guidance_decay(t, 0.2)
    assert g[0] == 0 and (g[20:] == 1).all() and (g[1:20] < 1).all() and (g[1:20] > 0).all()
    assert (g[1:21].diff() > 0).all()  # rising to 1 at t = 0.2
    assert (guidance_decay(t, 0.0) == 1).all()


def test_loss_of_known_errors():
    """Plain squared error: a row's loss is a m on a flow row, a m / 2 on a consistency row (m its mean square); the
    adaptive weight is the authors', a^2 m / (a^2 m + eps)^p on the mean square; logs are the plain mean squares."""
    objective = SoFlow(num_classes=0)
    x0, x1, y, gen = batch(6)
    tg = objective.targets(linear_net, x1, y, gen, Progress(1, 10), x0=x0)
    pred = linear_net(tg.x_t, tg.t, tg.d, tg.y)
    m = (pred - tg.v).pow(2).mean(1)
    a = tg.scale
    flow = tg.kind == 1
    for knobs, per_row in (
        ({"loss_weight": "mse"}, torch.where(flow, a * m, a * m / 2)),
        ({}, a * a * m / (a * a * m + 0.01) / torch.where(flow, a, 2 * a)),
    ):
        loss, logs = SoFlow.from_knobs(**knobs).loss(linear_net, tg)
        torch.testing.assert_close(loss, per_row.mean(), rtol=1e-12, atol=0)
        torch.testing.assert_close(logs["loss"], m.mean(), rtol=1e-12, atol=0)
        torch.testing.assert_close(logs["loss_consistency"], m[~flow].mean(), rtol=1e-12, atol=0)


def test_split_targets_keep_their_scales():
    """Gradient accumulation: the row blocks carry their rows' error scales, so the blocks' losses average to the
    whole batch's."""
    objective = SoFlow()
    x0, x1, y, gen = batch(7)
    tg = objective.targets(linear_net, x1, y, gen, Progress(1, 10), x0=x0)
    parts = tg.split(4)
    assert torch.equal(torch.cat([p.scale for p in parts]), tg.scale)
    whole, _ = objective.loss(linear_net, tg)
    blocks = sum(objective.loss(linear_net, p)[0] for p in parts) / 4
    torch.testing.assert_close(blocks, whole, rtol=1e-12, atol=0)


def test_cost_model_and_knob_checks():
    """Guided (the default, class-conditional): the null-label velocity on every row, the labelled one and the middle
    point's network on the 25% consistency rows, then one forward and backward: 2.5 / 1. Unconditional: 1.25 / 1."""
    assert SoFlow(num_classes=10).passes_per_row(64) == (2.5, 1.0)
    assert SoFlow(num_classes=10, mix_ratio=1.0).passes_per_row(64) == (2.25, 1.0)
    assert SoFlow().passes_per_row(64) == (1.25, 1.0)
    assert SoFlow(num_classes=10).step_cost(64) == pytest.approx(1.5)
    for bad in ({"mix_ratio": 0.0}, {"cfg_scale": 0.5}, {"ratio_start": 0.0}, {"ratio_schedule": "step"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SoFlow.from_knobs(**bad)


@pytest.mark.usefixtures("one_thread")
def test_command_line_trains_from_a_flow_run_and_samples_in_one_step(tmp_path, nano_args, capsys):
    """`shortcut train --objective flow`, then `shortcut train --objective soflow --init-from` that run, then
    `shortcut sample --steps 1`, on digits (DiT-Nano, a few steps)."""
    flow, tuned = tmp_path / "flow", tmp_path / "soflow"
    argv = ["train", "--quiet", "eval_every=0", *nano_args]
    assert main([*argv[:2], "--out", str(flow), "--objective", "flow", *argv[2:], "steps=2"]) == 0
    assert (
        main([*argv[:2], "--out", str(tuned), "--objective", "soflow", "--init-from", str(flow), *argv[2:], "steps=3"])
        == 0
    )
    assert f"initialised from {ckpt.latest_checkpoint(flow)}" in capsys.readouterr().err
    out = tmp_path / "samples.npz"
    assert main(["sample", "--ckpt", str(tuned), "--steps", "1", "--num", "4", "--out", str(out)]) == 0
    # the authors' two-step sampler: jump to the data, re-noise at t = 0.5, jump again
    two = tmp_path / "two.npz"
    assert (
        main(["sample", "--ckpt", str(tuned), "--steps", "2", "--sampler", "renoise", "--num", "4", "--out", str(two)])
        == 0
    )
    assert np.load(two)["arr_0"].shape == np.load(out)["arr_0"].shape
    loaded = load_model(tuned, "cpu")
    assert loaded.spec.objective == "soflow" and loaded.step == 3
    x = loaded.generate(4, 1, seed=0, labels=torch.arange(4))
    assert torch.isfinite(x).all()
