"""IMM: its kernel loss (zero for equal particle sets, a hand-computed MMD on two tiny groups), its times
and time weight (closed forms), its groups under gradient accumulation and several processes, its cost
model (training and sampling through the command line: tests/objectives/test_every_objective.py)."""

import math

import pytest
import torch
from torch import nn

from shortcut_models import path
from shortcut_models.errors import UserError
from shortcut_models.objectives import IMM, Targets, build_objective
from shortcut_models.objectives.imm import SIGMA_DATA, kernel_width, mmd2, time_weight
from shortcut_models.seeding import RowShare
from shortcut_models.training import Trainer


class Affine(nn.Module):
    """u(x, t, d) = a x + b t + c d, counting the rows it is called on."""

    def __init__(self, a=0.5, b=-0.2, c=0.7):
        super().__init__()
        self.a, self.b, self.c = nn.Parameter(torch.tensor(a)), b, c
        self.rows = 0

    def forward(self, x, t, d, y):
        self.rows += x.shape[0]
        return self.a * x + self.b * path.expand_like(t, x) + self.c * path.expand_like(d, x)


def test_the_kernel_loss_is_zero_for_equal_particles_and_grows_apart():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, 10, generator=g)
    width = torch.tensor([0.1, 0.2, 0.3])
    assert torch.equal(mmd2(a, a, width), torch.zeros(3))
    apart = [mmd2(a, a + shift, width) for shift in (0.01, 0.1, 1.0)]
    assert all(((x > 0) & (x < y)).all() for x, y in zip(apart, apart[1:]))


def test_the_kernel_loss_of_two_tiny_groups_is_the_hand_computed_mmd():
    """Groups of two one-element particles, {0, 1} against {0, 3} and {2, -1} against {2, -1.5}:
    k(a, b) = exp(-sigma |a - b| / w) (k0 = exp(-1e-4 / w) at distance 0, the floored one), so
    MMD^2 = (2 k0 + 2 k(1)) / 4 + (2 k0 + 2 k(3)) / 4 - 2 (k0 + k(3) + k(1) + k(2)) / 4 = (k0 - k(2)) / 2
    for the first, (k0 - k(0.5)) / 2 ... for the second by the same sums."""
    d = torch.tensor([0.5, 0.1], dtype=torch.float64)
    w = SIGMA_DATA * d + 1e-6
    torch.testing.assert_close(kernel_width(d), w)

    def k(dist, g):
        return math.exp(-max(SIGMA_DATA * dist, 1e-4) / w[g].item())

    a = torch.tensor([[[0.0], [1.0]], [[2.0], [-1.0]]], dtype=torch.float64)
    b = torch.tensor([[[0.0], [3.0]], [[2.0], [-1.5]]], dtype=torch.float64)
    first = (k(0, 0) - k(2, 0)) / 2
    within_a, within_b = (2 * k(0, 1) + 2 * k(3, 1)) / 4, (2 * k(0, 1) + 2 * k(3.5, 1)) / 4
    across = (k(0, 1) + k(3.5, 1) + k(3, 1) + k(0.5, 1)) / 4
    expected = torch.tensor([first, within_a + within_b - 2 * across], dtype=torch.float64)
    torch.testing.assert_close(mmd2(a, b, w), expected, atol=1e-14, rtol=1e-12)


def test_the_time_weight_is_escs_formula_in_its_time():
    t = torch.linspace(0.006, 0.999, 200, dtype=torch.float64)
    for a, b in ((2.0, 4.0), (1.0, 0.0), (3.0, -2.0)):
        r = 1 - t  # ESC's time: alpha = 1 - r, sigma = r, logSNR = 2 log(alpha / sigma)
        alpha, sigma = 1 - r, r
        logsnr = 2 * torch.log(alpha / sigma)
        esc = alpha**a / (alpha**2 + sigma**2) * 0.5 * (2 / (r * (1 - r))) * torch.sigmoid(b - logsnr)
        torch.testing.assert_close(time_weight(t, a, b), esc)
    assert time_weight(torch.tensor([1.0]), 2.0, 4.0).item() == 0.0  # finite at the data end


def test_times_closed_forms_and_groups_share_them(make_batch):
    x1, x0, g = make_batch(64)
    objective = IMM(gamma=3, time_min=0.1)
    tg = objective.targets(Affine(), x1, None, g, x0=x0)
    t, d = tg.t.view(16, 4), tg.d.view(16, 4)
    assert (t == t[:, :1]).all() and (d == d[:, :1]).all()  # one (t, d) per group of 4 consecutive rows
    assert t.unique().numel() == 16 and (tg.t >= 0.1).all() and (tg.t < 1).all()
    assert (tg.d >= 0).all() and (tg.t + tg.d <= 1).all()
    s = objective.intermediate_time(tg.t, tg.d)
    n = lambda x: (1 - x) / x  # noqa: E731
    torch.testing.assert_close(n(s), (n(tg.t.double()) - n(torch.tensor(0.1)) / 8).clamp_min(0))
    assert (s >= tg.t).all()
    clipped = IMM(gamma=3, time_min=0.1, clip_intermediate=True).intermediate_time(tg.t, tg.d)
    assert (clipped <= tg.t.double() + tg.d.double()).all() and (clipped < s).any()


def test_targets_are_the_target_networks_jump_from_the_intermediate_time(make_batch):
    x1, x0, g = make_batch(16)
    objective = IMM(gamma=2)
    net = Affine()
    tg = objective.targets(net, x1, None, g, x0=x0)
    s = objective.intermediate_time(tg.t, tg.d)
    x_s = path.interpolate(x0, x1, s)
    step = (tg.t.double() + tg.d.double() - s).float()
    expected = x_s + path.expand_like(step, x_s) * net(x_s, s.float(), step, tg.y)
    torch.testing.assert_close(tg.v, expected)
    torch.testing.assert_close(tg.x_t, path.interpolate(x0, x1, tg.t))
    assert not tg.v.requires_grad


def test_the_loss_is_zero_when_the_jump_lands_on_the_targets_and_weighs_groups_by_time(make_batch):
    x1, x0, g = make_batch(16)
    objective = IMM()
    model = Affine()
    tg = objective.targets(model, x1, None, g, x0=x0)
    with torch.no_grad():
        landed = tg.x_t + path.expand_like(tg.d, tg.x_t) * model(tg.x_t, tg.t, tg.d, tg.y)
    loss, logs = objective.loss(model, Targets(tg.x_t, tg.t, tg.d, landed, tg.y, tg.kind))
    assert loss.item() == 0.0 and logs["loss"].item() == 0.0
    loss, logs = objective.loss(model, tg)
    jump = (tg.x_t + path.expand_like(tg.d, tg.x_t) * model(tg.x_t, tg.t, tg.d, tg.y)).view(4, 4, -1)
    plain = mmd2(jump, tg.v.view(4, 4, -1), kernel_width(tg.d[::4]))
    torch.testing.assert_close(loss, (time_weight(tg.t[::4], 2.0, 4.0).float() * plain).mean())
    torch.testing.assert_close(logs["loss"], plain.mean())
    torch.testing.assert_close(logs["loss_kernel"], plain.mean())
    loss.backward()
    assert model.a.grad is not None and model.a.grad != 0
    adaptive = IMM.from_knobs(loss_weight="adaptive", adaptive_eps=0.01).loss(model, tg)[0]
    torch.testing.assert_close(adaptive, (time_weight(tg.t[::4], 2.0, 4.0).float() * plain / (plain + 0.01)).mean())


def test_label_dropout_per_row(make_batch):
    x1, x0, g = make_batch(4000)
    y = torch.randint(0, 10, (4000,))
    tg = IMM(num_classes=10).targets(Affine(), x1, y, g, x0=x0)
    dropped = tg.y == 10
    assert abs(dropped.double().mean().item() - 0.1) < 0.02 and torch.equal(tg.y[~dropped], y[~dropped])
    assert IMM().targets(Affine(), x1[:8], None, g, x0=x0[:8]).y.eq(0).all()  # unconditional: the null label


def test_gradient_accumulation_keeps_the_groups(make_batch):
    x1, x0, g = make_batch(32)
    objective = IMM()
    model = Affine()
    tg = objective.targets(model, x1, None, g, x0=x0)
    whole, _ = objective.loss(model, tg)
    chunks = [objective.loss(model, chunk)[0] for chunk in tg.split(4)]  # 8 rows: two groups each
    torch.testing.assert_close(whole, torch.stack(chunks).mean())
    with pytest.raises(ValueError, match="group_size=4"):
        objective.loss(model, tg.split(16)[0])  # two rows: half a group


def test_several_processes_group_their_own_rows(make_batch):
    """Each process makes groups of its own consecutive rows; each row keeps the noise and dropout of its
    global row, and a group takes the draws of its first row."""
    x1, x0, _ = make_batch(16)
    objective = IMM()
    share = RowShare.interleaved(16, 1, 2)  # rows 1, 3, ..., 15
    part = objective.targets(Affine(), x1[1::2], None, torch.Generator().manual_seed(3), x0=x0[1::2], rows=share)
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(16, generator=g), torch.rand(16, generator=g)  # one draw per global row, twice
    t, d, _ = objective.group_times(a[[1, 9]], b[[1, 9]])  # its groups start at global rows 1 and 9
    assert torch.equal(part.t, t.repeat_interleave(4)) and torch.equal(part.d, d.repeat_interleave(4))
    with pytest.raises(ValueError, match="group_size=4"):
        objective.targets(Affine(), x1[1:4:2], None, None, x0=x0[1:4:2], rows=RowShare.interleaved(4, 1, 2))


def test_batches_and_micro_batches_that_cut_groups_are_refused(nano_config, tmp_path):
    with pytest.raises(ValueError, match="group_size=4"):
        build_objective("imm", 0).kind_rows(18)
    with pytest.raises(UserError, match="group_size=4"):
        Trainer(nano_config("batch_size=18", objective="imm"), tmp_path / "a", progress=False)
    with pytest.raises(UserError, match="group_size=4"):
        Trainer(nano_config("grad_accum=8", objective="imm"), tmp_path / "b", progress=False)  # 2 rows each
    Trainer(nano_config("grad_accum=2", "group_size=8", objective="imm"), tmp_path / "c", progress=False)


def test_the_cost_model_counts_the_passes(make_batch):
    x1, x0, g = make_batch(16)
    objective, model = IMM(), Affine()
    tg = objective.targets(model, x1, None, g, x0=x0)
    objective.loss(model, tg)
    assert objective.passes_per_row(16) == (2.0, 1.0) and model.rows == 2 * 16
    assert objective.step_cost(16) == pytest.approx(4 / 3)
    assert objective.sampling_d is None and objective.sampling_d_at(4) is None  # the step actually taken


def test_defaults_are_escs():
    o = IMM()
    assert (o.group_size, o.gamma, o.time_min, o.weight_a, o.weight_b, o.clip_intermediate) == (
        4,
        12,
        0.006,
        2,
        4,
        False,
    )
    recipe = o.recipe
    assert (o.class_dropout, recipe.target_network, recipe.time_sampler, recipe.loss_weight) == (
        0.1,
        "online",
        "uniform",
        "mse",
    )
    for bad in ({"group_size": 0}, {"time_min": 1.0}, {"gamma": -1}, {"clip_intermediate": "maybe"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            build_objective("imm", 0, bad)
