"""Closed-form checks of the shortcut (self-consistency) targets (ALGORITHM.md), the level strata, the
guided teacher rows, the loss and the objective's argument checks."""

import pytest
import torch
from torch import nn

from shortcut_models import seeding
from shortcut_models.objectives import FlowMatching, Shortcut, TargetNetworks, level_strata
from shortcut_models.objectives.schedule import num_levels

EPS = 1e-5


class Affine(nn.Module):
    """An analytic 'teacher': v = a x + b t + c d (+ e y), elementwise."""

    def __init__(self, a=3.0, b=5.0, c=7.0, e=0.0, num_classes=0):
        super().__init__()
        self.a, self.b, self.c, self.e = a, b, c, e
        self.num_classes = num_classes
        self.calls = []

    def forward(self, x, t, d, y):
        self.calls.append((x.clone(), t.clone(), d.clone(), y.clone()))
        shape = (-1,) + (1,) * (x.ndim - 1)
        return self.a * x + self.b * t.view(shape) + self.c * d.view(shape) + self.e * y.float().view(shape)


def expected_shortcut_target(teacher, x_t, t, d, y, clip=4.0):
    half = d / 2
    v1 = teacher.a * x_t + teacher.b * t[:, None] + teacher.c * half[:, None] + teacher.e * y.float()[:, None]
    mid_raw = x_t + half[:, None] * v1
    mid = mid_raw.clamp(-clip, clip)
    v2 = teacher.a * mid + teacher.b * (t + half)[:, None] + teacher.c * half[:, None] + teacher.e * y.float()[:, None]
    raw = (v1 + v2) / 2
    return raw.clamp(-clip, clip), mid_raw, raw


def test_shortcut_targets_two_half_steps_with_both_clips(make_batch):
    x1, x0, g = make_batch(256, (6,))
    x1 = x1 * 2.0
    teacher = Affine()
    obj = Shortcut()
    tg = obj.targets(teacher, x1, None, g, x0=x0)
    nb = 256 // 8
    assert (tg.kind[:nb] == 0).all() and (tg.kind[nb:] == 1).all()
    b = slice(0, nb)
    t, d = tg.t[b], tg.d[b]
    assert torch.allclose(tg.x_t[b], (1 - (1 - EPS) * t[:, None]) * x0[b] + t[:, None] * x1[b], atol=1e-6)
    want, mid_raw, raw = expected_shortcut_target(teacher, tg.x_t[b], t, d, tg.y[b])
    assert torch.allclose(tg.v[b], want, atol=1e-5)
    # both clips were exercised by this teacher
    assert (mid_raw.abs() > 4).any() and (mid_raw.abs() <= 4).any()
    assert (raw.abs() > 4).any() and (raw.abs() <= 4).any()
    # the teacher was called at the half step size, twice, on the bootstrap rows only
    assert len(teacher.calls) == 2
    assert torch.allclose(teacher.calls[0][2], d / 2) and torch.allclose(teacher.calls[1][1], t + d / 2)
    # flow rows keep the flow target
    assert torch.allclose(tg.v[nb:], x1[nb:] - (1 - EPS) * x0[nb:], atol=1e-6)
    assert torch.equal(tg.d[nb:], torch.full((256 - nb,), 1 / 128))


def levels_of(d):
    return (-torch.log2(d)).round().long()


@pytest.mark.parametrize("batch", [64, 256])
def test_level_strata_match_authors_code(batch, make_batch):
    x1, x0, g = make_batch(batch)
    tg = Shortcut().targets(Affine(), x1, None, g)
    nb = batch // 8
    per = nb // 7
    want = [k for k in range(6, -1, -1) for _ in range(per)]
    want += [0] * (nb - len(want))
    assert levels_of(tg.d[:nb]).tolist() == want
    if batch == 64:
        assert want == [6, 5, 4, 3, 2, 1, 0, 0]
    else:
        assert want.count(0) == 8 and all(want.count(k) == 4 for k in range(1, 7))


def test_dt_bias_strata():
    levels = level_strata(32, 7, dt_bias=True).tolist()
    # levels 6..2 twice each ((32 // 2) // 7 = 2), then 8 at level 1, the rest at level 0
    assert levels == [6, 6, 5, 5, 4, 4, 3, 3, 2, 2] + [1] * 8 + [0] * 14


def test_small_batches_draw_levels_instead_of_collapsing(make_batch):
    seen = set()
    for seed in range(10):
        x1, x0, g = make_batch(16, seed=seed)
        tg = Shortcut().targets(Affine(), x1, None, g)
        seen.update(levels_of(tg.d[:2]).tolist())
    assert len(seen) >= 4 and seen <= set(range(7))


def test_time_lies_on_each_rows_grid(make_batch):
    x1, x0, g = make_batch(256)
    tg = Shortcut().targets(Affine(), x1, None, g)
    steps = tg.t / tg.d
    assert torch.equal(steps, steps.round())
    assert (steps >= 0).all() and (steps <= 1 / tg.d - 1).all()
    # every level's times are spread over the grid, not all 0
    assert (tg.t[:28] > 0).any()


def test_label_dropout_touches_flow_rows_only(make_batch):
    x1, x0, g = make_batch(256)
    y = torch.randint(0, 10, (256,), generator=torch.Generator().manual_seed(3))
    tg = Shortcut(num_classes=10, class_dropout=1.0).targets(Affine(num_classes=10), x1, y, g)
    assert torch.equal(tg.y[:32], y[:32])
    assert (tg.y[32:] == 10).all()
    tg = Shortcut(num_classes=10, class_dropout=0.3).targets(Affine(num_classes=10), x1, y, g)
    dropped = (tg.y[32:] == 10).float().mean().item()
    assert 0.15 < dropped < 0.45
    assert torch.equal(tg.y[:32], y[:32])


def test_bootstrap_cfg_guides_level_k_minus_1_rows(make_batch):
    x1, x0, g = make_batch(256)
    y = torch.randint(0, 10, (256,), generator=torch.Generator().manual_seed(3))
    teacher = Affine(a=0.5, b=0.2, c=0.1, e=0.3, num_classes=10)
    w = 1.5
    tg = Shortcut(num_classes=10, bootstrap_cfg=True, cfg_scale=w).targets(teacher, x1, y, g, x0=x0)
    nb = 32
    lev = levels_of(tg.d[:nb])
    guided = lev == 6
    assert guided.sum() == 4

    class Guided(Affine):
        def forward(self, x, t, d, yy):
            cond = Affine.forward(self, x, t, d, yy)
            unc = Affine.forward(self, x, t, d, torch.full_like(yy, 10))
            return unc + w * (cond - unc)

    g_teacher = Guided(0.5, 0.2, 0.1, 0.3)
    plain = Shortcut().teacher_target(teacher, tg.x_t[:nb], tg.t[:nb], tg.d[:nb], tg.y[:nb])
    manual = Shortcut().teacher_target(g_teacher, tg.x_t[:nb], tg.t[:nb], tg.d[:nb], tg.y[:nb])
    assert torch.allclose(tg.v[:nb][guided], manual[guided], atol=1e-5)
    assert torch.allclose(tg.v[:nb][~guided], plain[~guided], atol=1e-5)
    assert not torch.allclose(manual[guided], plain[guided])


class LabelAffine(torch.nn.Module):
    """v = a x + b t + c d + e y: a teacher with a closed form, label-dependent."""

    num_classes = 10

    def forward(self, x, t, d, y):
        shape = (-1,) + (1,) * (x.dim() - 1)
        return 0.5 * x + (0.2 * t + 0.1 * d + 0.03 * y.float()).view(shape)


@pytest.mark.parametrize("batch", [16, 256])  # 16: 2 self-consistency rows, levels drawn uniformly
def test_guided_teacher_rows_match_manual_guidance(batch):
    """The guided teacher finds its rows the same way for level strata and for uniform level draws."""
    x1 = torch.randn(batch, 2, generator=torch.Generator().manual_seed(0))
    y = torch.arange(batch) % 10
    w = 2.0
    objective = Shortcut(num_classes=10, bootstrap_cfg=True, cfg_scale=w)
    found = False
    for seed in range(20):  # until a draw puts a row at the finest level (always so for 256)
        tg = objective.targets(LabelAffine(), x1, y, seeding.generator(seed, 1, 0))
        nb = int((tg.kind == 0).sum())
        guided = (tg.d[:nb] == 2.0 ** -(num_levels(objective.max_steps) - 1)).nonzero().squeeze(1)
        if guided.numel():
            found = True
            break
    assert found
    plain = objective.teacher_target(LabelAffine(), tg.x_t[:nb], tg.t[:nb], tg.d[:nb], tg.y[:nb])
    manual = objective.teacher_target(LabelAffine(), tg.x_t[:nb], tg.t[:nb], tg.d[:nb], tg.y[:nb], guided)
    torch.testing.assert_close(tg.v[:nb], manual)
    # guidance moves exactly the guided rows: v_u + w (v_c - v_u) differs from v_c where y != null (by
    # 0.03 |y - 10| >= 0.03 per element and call, over 0.4 per row here); the other rows ride in a call of
    # more rows, so they are compared up to rounding (float32 values below 2: ~1e-7), not bit for bit
    moved = (manual - plain).abs().sum(dim=1) > 1e-4
    assert moved[guided].all() and moved.sum() == guided.numel()


def test_the_target_network_builds_the_self_consistency_rows(make_batch):
    x1, x0, g = make_batch(64)
    online, ema = Affine(a=1.0), Affine(a=2.0)
    networks = TargetNetworks(online=online, ema=ema)
    for choice, used, unused in (("ema", ema, online), ("online", online, ema)):
        used.calls.clear(), unused.calls.clear()
        Shortcut.from_knobs(target_network=choice).targets(networks, x1, None, g, x0=x0)
        assert len(used.calls) == 2 and not unused.calls


def test_no_gradient_reaches_the_teacher(make_batch):
    from shortcut_models.models import MLP

    student, teacher = MLP(3, 16, 1), MLP(3, 16, 1)
    for p in teacher.parameters():
        nn.init.normal_(p, std=0.3)
    x1, x0, g = make_batch(64)
    obj = Shortcut()
    tg = obj.targets(teacher, x1, None, g)
    assert not tg.v.requires_grad and tg.v.grad_fn is None
    loss, logs = obj.loss(student, tg)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    # self-teaching (target_network=online): the target is still a constant for the backward pass
    tg2 = Shortcut.from_knobs(target_network="online").targets(student, x1, None, g)
    assert tg2.v.grad_fn is None


def test_loss_is_one_mean_over_all_rows_with_parts(make_batch):
    x1, x0, g = make_batch(64)
    tg = Shortcut().targets(Affine(), x1, None, g)
    model = Affine(a=0.1, b=0.0, c=0.0)
    loss, logs = Shortcut().loss(model, tg)
    err = (model(tg.x_t, tg.t, tg.d, tg.y) - tg.v).pow(2).mean(dim=1)
    assert torch.allclose(loss, err.mean())
    assert torch.allclose(logs["loss_self_consistency"], err[:8].mean())
    assert torch.allclose(logs["loss_flow"], err[8:].mean())
    assert torch.allclose(loss, (8 * logs["loss_self_consistency"] + 56 * logs["loss_flow"]) / 64)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="at least 8 rows"):
        Shortcut().targets(Affine(), torch.randn(4, 2), None, None)
    with pytest.raises(ValueError, match="class_dropout"):
        Shortcut(class_dropout=1.5)
    with pytest.raises(ValueError, match="power of two"):
        FlowMatching(max_steps=100)
