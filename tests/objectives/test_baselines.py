"""The baselines' draws: times on each level's grid, the curriculum and stages, reflow rows; knobs and
the distillation knobs. (Their target formulas are checked against the authors' code in test_baselines_reference.py.)"""

import pytest
import torch

from shortcut_models import path
from shortcut_models.objectives import (
    ConsistencyDistillation,
    ConsistencyTraining,
    FlowMatching,
    LiveReflow,
    Progress,
    ProgressiveDistillation,
    TargetNetworks,
    build_objective,
)

RECIPE = ("time_sampler", "time_mu", "time_sigma", "loss_weight", "adaptive_power", "adaptive_eps", "huber_c")


def net(x, t, d, y):
    return torch.tanh(x) * (1 + t[:, None]) - d[:, None]


def on_grid(t, d):
    return torch.equal(torch.round(t / d) * d, t) and bool(((t >= 0) & (t + d <= 1 + 1e-6)).all())


@pytest.mark.parametrize("step,level", [(0, 0), (100, 0), (143, 1), (999, 6)])
def test_consistency_training_curriculum(make_batch, step, level):
    x1, x0, g = make_batch(64)
    obj = ConsistencyTraining()
    progress = Progress(step, 1000)
    tg = obj.targets(net, x1, generator=g, progress=progress, x0=x0)
    assert obj.level(progress) == level and torch.all(tg.d == 2.0**-level) and on_grid(tg.t, tg.d)
    assert (tg.kind == 0).all() and obj.row_kinds == ("consistency",)
    expected = obj.build(net, x0, x1, tg.t, tg.y, 2.0**-level)
    torch.testing.assert_close(tg.v, expected.v)


@pytest.mark.parametrize("step,level", [(0, 6), (143, 5), (999, 0)])
def test_progressive_distillation_stage_levels(make_batch, step, level):
    x1, x0, g = make_batch(64)
    obj = ProgressiveDistillation()
    progress = Progress(step, 1000)
    tg = obj.targets(TargetNetworks(teacher=net), x1, generator=g, progress=progress, x0=x0)
    assert obj.level(progress) == level and torch.all(tg.d == 2.0**-level) and on_grid(tg.t, tg.d)


def test_consistency_distillation_rows_are_at_the_flow_level(make_batch):
    x1, x0, g = make_batch(64)
    obj = ConsistencyDistillation()
    tg = obj.targets(TargetNetworks(ema=net, teacher=net), x1, generator=g, x0=x0)
    assert torch.all(tg.d == 1 / 128) and on_grid(tg.t, tg.d) and obj.sampling_d == 1 / 128
    # the data the target jumps to, from the last grid point, is the teacher's next point itself
    last = tg.t == 127 / 128
    x_t = path.interpolate(x0, x1, tg.t)
    step = (x_t + net(x_t, tg.t, tg.d, None) / 128).clamp(-4, 4)
    torch.testing.assert_close((tg.v * (1 - tg.t[:, None]))[last], (step - x_t)[last])
    with pytest.raises(ValueError, match="teacher network"):
        ConsistencyDistillation().targets(TargetNetworks(online=net, ema=net), x1, generator=g, x0=x0)


def test_live_reflow_rows(make_batch):
    x1, x0, g = make_batch(64)
    obj = LiveReflow()
    tg = obj.targets(net, x1, generator=g, x0=x0)
    flow = FlowMatching().targets(None, x1, generator=torch.Generator().manual_seed(1), x0=x0)
    assert (tg.kind[:8] == 0).all() and (tg.kind[8:] == 1).all() and obj.row_kinds == ("reflow", "flow")
    assert torch.all(tg.d[:8] == 1) and torch.all(tg.d[8:] == 1 / 128)
    assert (obj.sampling_d_at(1), obj.sampling_d_at(64), obj.sampling_d_at(128)) == (1.0, 1.0, 1 / 128)
    torch.testing.assert_close(tg.v[8:], flow.v[8:])  # flow rows: flow matching, same draws
    x = x0[:8]
    for i in range(8):
        x = x + net(x, torch.full((8,), i / 8), torch.full((8,), 1 / 128), None) / 8
    torch.testing.assert_close(tg.v[:8], x - x0[:8])  # reflow rows: 8 Euler steps of the network
    with pytest.raises(ValueError, match="reflow row"):
        obj.targets(net, x1[:4], generator=g)


def test_the_distillation_methods_distil_a_flow_matching_run_and_their_knobs():
    assert ConsistencyDistillation.teacher_run and ProgressiveDistillation.teacher_run
    assert ConsistencyDistillation.teacher_objective == ProgressiveDistillation.teacher_objective == "flow"
    assert not ConsistencyTraining.teacher_run and "teacher" in ProgressiveDistillation.knobs()
    obj = build_objective("progressive-distillation", 0, {"teacher": "runs/flow", "target_network": "online"})
    own = {k: v for k, v in obj.args().items() if k not in RECIPE}
    assert own == {
        "teacher": "runs/flow",
        "target_network": "online",
        "target_clamp": 0.0,
        "max_steps": 128,
        "clip": 4.0,
    }
    with pytest.raises(ValueError, match="bootstrap_every"):
        build_objective("live-reflow", 0, {"bootstrap_every": 0})
