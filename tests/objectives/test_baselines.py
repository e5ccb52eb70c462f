"""The baselines' draws: times on each level's grid, the curriculum and stages, reflow rows; knobs and
the registry. (Their target formulas are checked against the authors' code in test_baselines_reference.py.)"""

import pytest
import torch

from shortcut_models import path
from shortcut_models.objectives import (
    OBJECTIVES,
    ConsistencyDistillation,
    ConsistencyTraining,
    FlowMatching,
    LiveReflow,
    ProgressiveDistillation,
    build_objective,
)


def net(x, t, d, y):
    return torch.tanh(x) * (1 + t[:, None]) - d[:, None]


def on_grid(t, d):
    return torch.equal(torch.round(t / d) * d, t) and bool(((t >= 0) & (t + d <= 1 + 1e-6)).all())


@pytest.mark.parametrize("step,level", [(0, 0), (100, 0), (143, 1), (999, 6)])
def test_consistency_training_curriculum(make_batch, step, level):
    x1, x0, g = make_batch(64)
    obj = ConsistencyTraining()
    obj.begin_step(step, 1000)
    tg = obj.targets(net, x1, generator=g, x0=x0)
    assert obj.level == level and torch.all(tg.d == 2.0**-level) and on_grid(tg.t, tg.d) and tg.bootstrap.all()
    expected = obj.build(net, x0, x1, tg.t, tg.y)
    torch.testing.assert_close(tg.v, expected.v)


@pytest.mark.parametrize("step,level", [(0, 6), (143, 5), (999, 0)])
def test_progressive_distillation_stage_levels(make_batch, step, level):
    x1, x0, g = make_batch(64)
    obj = ProgressiveDistillation()
    obj.bind_teacher(net)
    obj.begin_step(step, 1000)
    tg = obj.targets(obj.select_teacher(None, None), x1, generator=g, x0=x0)
    assert obj.level == level and torch.all(tg.d == 2.0**-level) and on_grid(tg.t, tg.d)


def test_consistency_distillation_rows_are_at_the_flow_level(make_batch):
    x1, x0, g = make_batch(64)
    obj = ConsistencyDistillation()
    obj.bind_teacher(net)
    tg = obj.targets(net, x1, generator=g, x0=x0)
    assert torch.all(tg.d == 1 / 128) and on_grid(tg.t, tg.d) and obj.sampling_d == 1 / 128
    # the data the target jumps to, from the last grid point, is the teacher's next point itself
    last = tg.t == 127 / 128
    x_t = path.interpolate(x0, x1, tg.t)
    step = (x_t + net(x_t, tg.t, tg.d, None) / 128).clamp(-4, 4)
    torch.testing.assert_close((tg.v * (1 - tg.t[:, None]))[last], (step - x_t)[last])
    with pytest.raises(ValueError, match="teacher"):
        ConsistencyDistillation().targets(net, x1, generator=g, x0=x0)


def test_live_reflow_rows(make_batch):
    x1, x0, g = make_batch(64)
    obj = LiveReflow()
    tg = obj.targets(net, x1, generator=g, x0=x0)
    flow = FlowMatching().targets(None, x1, generator=torch.Generator().manual_seed(1), x0=x0)
    assert tg.bootstrap[:8].all() and not tg.bootstrap[8:].any()
    assert torch.all(tg.d[:8] == 1) and torch.all(tg.d[8:] == 1 / 128)
    assert (obj.sampling_d_at(1), obj.sampling_d_at(64), obj.sampling_d_at(128)) == (1.0, 1.0, 1 / 128)
    torch.testing.assert_close(tg.v[8:], flow.v[8:])  # flow rows: flow matching, same draws
    x = x0[:8]
    for i in range(8):
        x = x + net(x, torch.full((8,), i / 8), torch.full((8,), 1 / 128), None) / 8
    torch.testing.assert_close(tg.v[:8], x - x0[:8])  # reflow rows: 8 Euler steps of the network
    with pytest.raises(ValueError, match="reflow row"):
        obj.targets(net, x1[:4], generator=g)


def test_registry_and_knobs():
    assert list(OBJECTIVES)[2:] == [
        "consistency-training",
        "consistency-distillation",
        "progressive-distillation",
        "live-reflow",
        "meanflow",
    ]
    assert ConsistencyDistillation.teacher_run and ProgressiveDistillation.teacher_run
    assert not ConsistencyTraining.teacher_run and "teacher" in ProgressiveDistillation.knobs()
    obj = build_objective("progressive-distillation", 0, {"teacher": "runs/flow", "bootstrap_ema": False})
    assert obj.args() == {"teacher": "runs/flow", "bootstrap_ema": False, "max_steps": 128, "clip": 4.0}
    with pytest.raises(ValueError, match="bootstrap_every"):
        build_objective("live-reflow", 0, {"bootstrap_every": 0})
