"""sCT: the consistency target in closed form (a linear field, the exact flow of dx/dt = x), the tangent
warm-up over training, the tangent normalisation, its rows and times, its cost model and one-step sampling
(training and sampling through the command line: tests/objectives/test_every_objective.py)."""

import math

import pytest
import torch
from torch import nn

from shortcut_models import path
from shortcut_models.objectives import ContinuousConsistency, MeanFlow, Progress, build_objective
from shortcut_models.objectives.meanflow_identity import identity_target
from shortcut_models.sampling import sample


class LinearField(nn.Module):
    """u(x, t, d) = a x + b t + c d: along the path with tangent (v, 1, -1), D u = a v + b - c."""

    def __init__(self, a=0.7, b=-0.3, c=1.9):
        super().__init__()
        self.a, self.b, self.c, self.num_classes = a, b, c, 0

    def forward(self, x, t, d, y):
        return self.a * x + self.b * t[:, None] + self.c * d[:, None]


def closed_form(field, tg, x0, x1, weight):
    """Consistency rows: v + weight (1 - t)(a v + b - c); flow rows: v."""
    v = path.velocity(x0, x1)
    jump = v + weight * (1 - tg.t[:, None]) * (field.a * v + field.b - field.c)
    return torch.where((tg.kind == 0)[:, None], jump, v)


@pytest.mark.parametrize("step,weight", [(0, 0.0), (2500, 0.25), (10000, 1.0), (50000, 1.0)])
def test_the_target_of_a_linear_field_is_the_closed_form_with_the_warm_up(step, weight, make_batch):
    x1, x0, g = make_batch(64)
    field = LinearField()
    tg = ContinuousConsistency().targets(field, x1, None, g, Progress(step, 60000), x0=x0)
    torch.testing.assert_close(tg.v, closed_form(field, tg, x0, x1, weight))


def test_without_warm_up_the_full_target_from_the_first_step(make_batch):
    x1, x0, g = make_batch(64)
    field = LinearField()
    tg = ContinuousConsistency(derivative_warmup_steps=0).targets(field, x1, None, g, Progress(0, 10), x0=x0)
    torch.testing.assert_close(tg.v, closed_form(field, tg, x0, x1, 1.0))


def test_the_exact_jump_is_its_own_target():
    """For dx/dt = x the exact average velocity to t = 1 satisfies the consistency condition: the
    target built from it equals it, and the data it jumps to stays put along the path."""

    class ExpField(nn.Module):
        def forward(self, x, t, d, y):
            factor = torch.where(d > 0, torch.expm1(d) / d.clamp_min(1e-300), torch.ones_like(d))
            return x * factor[:, None]

    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, generator=g, dtype=torch.float64)
    t = torch.rand(8, generator=g, dtype=torch.float64)
    field, y = ExpField(), torch.zeros(8, dtype=torch.long)
    target = ContinuousConsistency().consistency_target(field, x, t, x, y, 1.0)  # v(x) = x
    torch.testing.assert_close(target, field(x, t, 1 - t, y), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(x + (1 - t[:, None]) * target, x * torch.exp(1 - t[:, None]))  # x(1) = e^(1-t) x(t)


def test_warm_or_not_it_is_meanflows_target_on_the_interval_to_the_data():
    g = torch.Generator().manual_seed(2)
    x, v = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    t, y, field = torch.rand(6, generator=g), torch.zeros(6, dtype=torch.long), LinearField()
    ours = ContinuousConsistency().consistency_target(field, x, t, v, y, 1.0)
    torch.testing.assert_close(ours, identity_target(field, x, t, 1 - t, v, y))
    torch.testing.assert_close(ContinuousConsistency().consistency_target(field, x, t, v, y, 0.0), v)


def test_the_defaults_are_escs_sct_run():
    obj = ContinuousConsistency()
    recipe = obj.recipe
    assert (recipe.time_sampler, recipe.time_mu, recipe.time_sigma, obj.time_draws) == ("logit-normal", 1.0, 1.4, 2)
    assert (obj.interval_share, recipe.loss_weight, obj.class_dropout, recipe.target_network) == (
        0.25,
        "mse",
        0.1,
        "online",
    )
    assert (obj.derivative_warmup_steps, obj.tangent_norm, recipe.target_clamp, obj.sampling_d) == (
        10000,
        0.0,
        0.0,
        None,
    )


def test_meanflows_time_of_its_flow_rows_is_not_an_sct_knob(make_batch):
    """sCT draws its own times: it has no ``flow_row_time`` knob, and MeanFlow's is not listed, not recorded,
    and ignored when given (as any other objective's knob is)."""
    assert "flow_row_time" in MeanFlow.knobs() and "flow_row_time" not in ContinuousConsistency.knobs()
    assert "flow_row_time" not in ContinuousConsistency.knob_docs()
    assert "flow_row_time" not in build_objective("sct", 0).args()
    x1, x0, _ = make_batch(16)
    field = LinearField()
    targets = []
    for extra in ({}, {"flow_row_time": "first"}, {"flow_row_time": "smaller"}):
        obj = build_objective("sct", 0, {**build_objective("sct", 0).args(), **extra})
        tg = obj.targets(field, x1, generator=torch.Generator().manual_seed(5), x0=x0)
        targets.append(torch.cat([tg.t, tg.d, tg.v.flatten()]))
    assert torch.equal(targets[0], targets[1]) and torch.equal(targets[0], targets[2])


def test_the_warm_up_weight():
    obj = ContinuousConsistency(derivative_warmup_steps=400)
    assert [obj.derivative_weight(Progress(s, 1000)) for s in (0, 100, 400, 999)] == [0.0, 0.25, 1.0, 1.0]
    assert ContinuousConsistency().derivative_weight(Progress(5000, 10**6)) == 0.5  # 10000 steps by default


def test_tangent_normalisation():
    """target = u- + g / (rms(g) + c), g = raw target - u-: the same direction, rms(g) / (rms(g) + c) long."""
    g = torch.Generator().manual_seed(3)
    x, v = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    t, y, field = torch.rand(6, generator=g), torch.zeros(6, dtype=torch.long), LinearField()
    raw = ContinuousConsistency().consistency_target(field, x, t, v, y, 1.0)
    normed = ContinuousConsistency(tangent_norm=0.1).consistency_target(field, x, t, v, y, 1.0)
    u = field(x, t, 1 - t, y)
    tangent = raw - u
    rms = tangent.pow(2).mean(dim=1, keepdim=True).sqrt()
    torch.testing.assert_close(normed, u + tangent / (rms + 0.1))
    assert ((normed - u).pow(2).mean(dim=1).sqrt() < 1).all()  # a bounded step from the network's output


def test_rows_times_and_labels(make_batch):
    x1, x0, _ = make_batch(64)
    y = torch.arange(64) % 10
    obj = ContinuousConsistency(num_classes=10, class_dropout=0.5)
    tg = obj.targets(LinearField(), x1, y, torch.Generator().manual_seed(5), Progress(1, 10), x0=x0)
    assert obj.kind_rows(64) == (16, 48) and (tg.kind[:16] == 0).all() and (tg.kind[16:] == 1).all()
    torch.testing.assert_close(tg.t[:16] + tg.d[:16], torch.ones(16))  # consistency rows jump to the data
    assert (tg.d[16:] == 0).all() and torch.equal(tg.v[16:], path.velocity(x0, x1)[16:])  # flow rows
    # draws after the noise: two logit-normal times (the earlier kept), then the label dropout
    g = torch.Generator().manual_seed(5)
    a, c = (torch.sigmoid(1.0 + 1.4 * torch.randn(64, generator=g).double()).float() for _ in range(2))
    assert torch.equal(tg.t, torch.minimum(a, c))
    assert torch.equal(tg.y, torch.where(torch.rand(64, generator=g) < 0.5, 10, y))
    one = ContinuousConsistency(time_draws=1).targets(LinearField(), x1, None, torch.Generator().manual_seed(5), x0=x0)
    assert torch.equal(one.t, a)


def test_the_time_sampler_sits_near_the_noise():
    """ESC's sCT run: logit-normal with mu = -1.0, sigma = 1.4 in its time (1 = noise), the noisier of two
    draws; here t = 0 is noise, so the median is the median of the smaller of two draws of sigmoid(1 + 1.4 n)."""
    x = torch.zeros(20000, 1)
    tg = ContinuousConsistency(interval_share=0.0).targets(None, x, None, torch.Generator().manual_seed(0), x0=x)
    q = 1 - 0.5**0.5  # P(min(a, c) < m) = 1/2 when P(a < m) = q
    quantile = 1.0 + 1.4 * math.sqrt(2) * torch.erfinv(torch.tensor(2 * q - 1)).item()
    assert abs(tg.t.median().item() - 1 / (1 + math.exp(-quantile))) < 0.01


def test_the_cost_model():
    """One forward-mode product on the consistency rows (primal + tangent: two forwards), then one forward
    and backward per row; no product, no network call, without consistency rows."""
    assert ContinuousConsistency().passes_per_row(64) == (1.5, 1.0)
    assert ContinuousConsistency(interval_share=0.5).passes_per_row(64) == (2.0, 1.0)
    assert ContinuousConsistency().step_cost(64) == pytest.approx(3.5 / 3)

    class Counter(LinearField):
        calls = 0

        def forward(self, *args):
            Counter.calls += 1
            return super().forward(*args)

    x = torch.zeros(8, 3)
    ContinuousConsistency(interval_share=0.0).targets(Counter(), x, generator=torch.Generator().manual_seed(0))
    assert Counter.calls == 0 and ContinuousConsistency(interval_share=0.0).passes_per_row(8) == (1.0, 1.0)


def test_no_gradient_reaches_the_target(make_batch):
    x1, x0, g = make_batch(16)
    net = nn.Linear(3, 3)
    tg = ContinuousConsistency().targets(lambda x, t, d, y: net(x) * (1 + t[:, None]) + d[:, None], x1, generator=g)
    assert not tg.v.requires_grad


def test_one_step_sampling_is_the_jump_to_the_data():
    field = LinearField()
    x0, ones = torch.randn(5, 3), torch.ones(5)
    obj = ContinuousConsistency()
    torch.testing.assert_close(sample(field, x0, 1, fixed_d=obj.sampling_d_at(1)), x0 + field(x0, 0 * ones, ones, None))
    two = sample(field, x0, 2, fixed_d=obj.sampling_d_at(2))  # N steps: the step taken, as ESC's sampler
    half = x0 + 0.5 * field(x0, 0 * ones, ones / 2, None)
    torch.testing.assert_close(two, half + 0.5 * field(half, ones / 2, ones / 2, None))


@pytest.mark.parametrize(
    "knobs,message",
    [
        ({"time_draws": 3}, "time_draws"),
        ({"tangent_norm": -0.1}, "tangent_norm"),
        ({"derivative_warmup_steps": -1}, "derivative_warmup_steps"),
    ],
)
def test_bad_knobs_raise(knobs, message):
    with pytest.raises(ValueError, match=message):
        build_objective("sct", 0, knobs)
