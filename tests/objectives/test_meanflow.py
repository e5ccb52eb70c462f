"""MeanFlow: the target is v + d * (du/dt along the path, end fixed) (float64 finite differences and closed
forms), its time sampler, its adaptive loss, and one-step sampling."""

import math

import pytest
import torch
from torch import nn

from shortcut_models import path
from shortcut_models.models import build_model
from shortcut_models.objectives import MeanFlow, build_objective
from shortcut_models.objectives.meanflow_identity import identity_target, path_derivative
from shortcut_models.sampling import sample


class LinearField(nn.Module):
    """u(x, t, d) = a x + b t + c d: along the path with tangent (v, 1, -1), D u = a v + b - c."""

    def __init__(self, a=0.7, b=-0.3, c=1.9):
        super().__init__()
        self.a, self.b, self.c = a, b, c

    def forward(self, x, t, d, y):
        return self.a * x + self.b * t[:, None] + self.c * d[:, None]


class ExpField(nn.Module):
    """The exact average velocity of dx/dt = x: u(x, t, d) = x (e^d - 1) / d (x at d = 0)."""

    def forward(self, x, t, d, y):
        factor = torch.where(d > 0, torch.expm1(d) / d.clamp_min(1e-300), torch.ones_like(d))
        return x * factor[:, None]


def test_target_of_a_linear_field_is_the_closed_form():
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    t, d = torch.rand(6, generator=g, dtype=torch.float64) / 2, torch.rand(6, generator=g, dtype=torch.float64) / 2
    field = LinearField()
    target = identity_target(field, x, t, d, v, torch.zeros(6, dtype=torch.long))
    expected = v + d[:, None] * (field.a * v + field.b - field.c)
    torch.testing.assert_close(target, expected, atol=1e-12, rtol=1e-12)


def test_the_exact_average_velocity_is_its_own_target():
    """For dx/dt = x the true u satisfies the MeanFlow identity: the target built from it equals it."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, generator=g, dtype=torch.float64)
    t, d = torch.rand(8, generator=g, dtype=torch.float64) / 2, torch.rand(8, generator=g, dtype=torch.float64) / 2
    field = ExpField()
    target = identity_target(field, x, t, d, x, torch.zeros(8, dtype=torch.long))  # v(x) = x
    torch.testing.assert_close(target, field(x, t, d, None), atol=1e-12, rtol=1e-12)
    assert not torch.allclose(target, x)  # not the instantaneous velocity: the d term matters


def test_target_equals_finite_differences_of_a_dit_along_the_path():
    """A DiT (attention included) in float64: v + d * central difference of u along (v, 1, -1)."""
    torch.manual_seed(0)
    net = build_model("DiT-Nano", (1, 8, 8), 0, {}).double().eval()
    with torch.no_grad():  # leave the zero initialisation of the output layers: a non-trivial function
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    g = torch.Generator().manual_seed(2)
    x1, x0 = torch.randn(4, 1, 8, 8, generator=g).double(), torch.randn(4, 1, 8, 8, generator=g).double()
    t = torch.tensor([0.1, 0.3, 0.5, 0.2], dtype=torch.float64)
    d = torch.tensor([0.4, 0.2, 0.5, 0.05], dtype=torch.float64)
    x_t, v = path.interpolate(x0, x1, t), path.velocity(x0, x1)
    y = torch.zeros(4, dtype=torch.long)
    target = identity_target(net, x_t, t, d, v, y)
    h = 1e-6
    with torch.no_grad():
        up = net(x_t + h * v, t + h, d - h, y)
        down = net(x_t - h * v, t - h, d + h, y)
    expected = v + d[:, None, None, None] * (up - down) / (2 * h)
    torch.testing.assert_close(target, expected, atol=1e-5, rtol=1e-5)
    assert (target - v).abs().max() > 1e-3  # the derivative term is not negligible here


def test_the_product_runs_through_attention_with_the_math_kernel():
    """The derivative along the path runs on a DiT (the CPU flash kernel has no forward-mode rule) and equals
    ``torch.func.jvp`` through the math kernel: two computations of one product, equal within float32
    rounding (the weights are perturbed so that the product is far from zero: a fresh DiT's output is 0)."""
    net = build_model("DiT-Nano", (1, 8, 8), 0, {}).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    x, v = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    ones, y = torch.ones(2), torch.zeros(2, dtype=torch.long)
    out = path_derivative(net, x, ones / 4, ones / 2, v, y)
    with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
        expected = torch.func.jvp(lambda a, b, c: net(a, b, c, y), (x, ones / 4, ones / 2), (v, ones, -ones))[1]
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_time_sampler_rows(make_batch):
    x1, x0, g = make_batch(64)
    obj = MeanFlow(interval_share=0.25)
    tg = obj.targets(LinearField(), x1, generator=g, x0=x0)
    assert obj.kind_rows(64) == (16, 48) and (tg.kind[:16] == 0).all() and (tg.kind[16:] == 1).all()
    assert (tg.d[:16] > 0).all() and (tg.d[16:] == 0).all()
    assert ((tg.t > 0) & (tg.t + tg.d < 1)).all()
    torch.testing.assert_close(tg.v[16:], path.velocity(x0, x1)[16:])  # d = 0: flow matching
    # rows with d = 0 sit at the smaller of two logit-normal draws (mu = 0.4), as the official code: its
    # median is at the quantile 1 - 1/sqrt(2) of one draw; with flow_row_time="first", sigmoid(0.4)
    quantile = 0.4 + math.sqrt(2) * torch.erfinv(torch.tensor(2 * (1 - 2**-0.5) - 1)).item()
    assert abs(tg.t[16:].median().item() - 1 / (1 + math.exp(-quantile))) < 0.05
    first = MeanFlow(flow_row_time="first").targets(
        LinearField(), x1, generator=torch.Generator().manual_seed(1), x0=x0
    )
    assert abs(first.t[16:].median().item() - 1 / (1 + math.exp(-0.4))) < 0.1
    assert (first.t[:16] == tg.t[:16]).all() and (first.t[16:] >= tg.t[16:]).all()  # same draws, other choice


def test_adaptive_loss_weight(make_batch):
    x1, x0, g = make_batch(16)
    tg = MeanFlow().targets(LinearField(), x1, generator=g, x0=x0)
    model = LinearField(0.1, 0.2, 0.3)
    sq = (model(tg.x_t, tg.t, tg.d, tg.y) - tg.v).pow(2).sum(1)
    plain, _ = MeanFlow.from_knobs(adaptive_power=0.0).loss(model, tg)
    weighted, logs = MeanFlow.from_knobs(adaptive_power=1.0, adaptive_eps=0.5).loss(model, tg)
    torch.testing.assert_close(plain, sq.mean())
    torch.testing.assert_close(weighted, (sq / (sq + 0.5)).mean())
    torch.testing.assert_close(logs["loss"], sq.mean() / 3)


def test_no_gradient_reaches_the_target(make_batch):
    x1, x0, g = make_batch(16)
    net = nn.Linear(3, 3)
    model = lambda x, t, d, y: net(x) * (1 + t[:, None]) + d[:, None]  # noqa: E731
    tg = MeanFlow().targets(model, x1, generator=g, x0=x0)
    assert not tg.v.requires_grad


def test_one_step_sampling_is_one_jump_of_the_average_velocity():
    field = LinearField()
    field.num_classes = 0
    x0 = torch.randn(5, 3)
    ones = torch.ones(5)
    out = sample(field, x0, 1, fixed_d=MeanFlow().sampling_d)
    torch.testing.assert_close(out, x0 + field(x0, 0 * ones, ones, None))


def test_bad_knobs_raise():
    with pytest.raises(ValueError, match="interval_share"):
        build_objective("meanflow", 0, {"interval_share": 1.5})
    with pytest.raises(ValueError, match="time_sigma"):
        build_objective("meanflow", 0, {"time_sigma": 0.0})
