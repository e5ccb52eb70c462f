"""ESC: its plug-in velocity, terminal-time schedule, guidance in training and warm-up against closed forms,
and its cost model against the passes it makes (training and sampling: tests/objectives/test_every_objective.py)."""

import pytest
import torch
from torch import nn

from shortcut_models import path
from shortcut_models.objectives import ESC, MeanFlow, Progress, TargetNetworks, build_objective
from shortcut_models.objectives.esc import plugin_velocity
from shortcut_models.seeding import RowDraws


class LinearField(nn.Module):
    """u(x, t, d, y) = a x + b t + c d + e y: D u along (w, 1, -1) is a w + b - c."""

    def __init__(self, a=0.7, b=-0.3, c=1.9, e=0.05):
        super().__init__()
        self.a, self.b, self.c, self.e = a, b, c, e

    def forward(self, x, t, d, y):
        return self.a * x + self.b * t[:, None] + self.c * d[:, None] + self.e * y[:, None].to(x.dtype)


class Counter(LinearField):
    """Counts the rows it is called on."""

    rows = 0

    def forward(self, x, t, d, y):
        self.rows += x.shape[0]
        return super().forward(x, t, d, y)


def rows_of(obj, y, b=64, step=0, seed=1):
    draws = RowDraws.for_batch(b, torch.Generator().manual_seed(seed), torch.device("cpu"))
    return obj.draw_rows(y, draws, obj.kind_rows(b)[0], Progress(step))


# ----------------------------------------------------------------------------- plug-in velocity
def test_the_plugin_velocity_of_one_data_point_is_its_conditional_velocity(make_batch):
    x1, x0, _ = make_batch(1, (3, 4))
    x1, x0 = x1.double(), x0.double()
    for t in (0.0, 0.3, 0.9, 0.999):
        tt = torch.tensor([t], dtype=torch.float64)
        out = plugin_velocity(path.interpolate(x0, x1, tt), tt, x1)
        torch.testing.assert_close(out, path.velocity(x0, x1), atol=1e-9, rtol=1e-9)


def test_the_plugin_velocity_is_the_posterior_mean_velocity(make_batch):
    """At t = 0 every data row is equally likely (the mean of the data); near a data point at t -> 1, that
    point; in between, the softmax of -|x0_j|^2 / 2 over the rows' noises."""
    x1, x0, _ = make_batch(8, (5,))
    x1, x0 = x1.double(), x0.double()
    zero = torch.zeros(8, dtype=torch.float64)
    torch.testing.assert_close(plugin_velocity(x0, zero, x1), x1.mean(0) - (1 - path.EPS) * x0)
    t = torch.full((8,), 0.4, dtype=torch.float64)
    x_t = path.interpolate(x0, x1, t)
    a = 1 - (1 - path.EPS) * 0.4
    noises = (x_t[:, None] - 0.4 * x1[None]) / a  # [row, data row, 5]
    w = torch.softmax(-noises.pow(2).sum(-1) / 2, dim=1)
    expected = torch.einsum("ij,ijk->ik", w, x1[None] - (1 - path.EPS) * noises)
    torch.testing.assert_close(plugin_velocity(x_t, t, x1), expected)
    near = torch.full((8,), 0.999, dtype=torch.float64)
    torch.testing.assert_close(plugin_velocity(path.interpolate(x0, x1, near), near, x1), path.velocity(x0, x1))


def test_the_plugin_velocity_keeps_float32_under_autocast(make_batch):
    """The trainer builds targets under bfloat16 autocast: the kernel's logits (~ D / (1 - t)^2) must not be."""
    x1, x0, _ = make_batch(32, (256,))
    t = torch.full((32,), 0.9)
    x_t = path.interpolate(x0, x1, t)
    exact = plugin_velocity(x_t, t, x1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (torch.mm(x_t, x1.T).dtype, plugin_velocity(x_t, t, x1).dtype) == (torch.bfloat16, torch.float32)
        torch.testing.assert_close(plugin_velocity(x_t, t, x1), exact)


def test_plugin_rows_are_the_plugin_share(make_batch):
    x1, x0, _ = make_batch(4096, (2,))
    obj = ESC(plugin_share=0.3, interval_share=0.0)  # no network: flow rows, no labels
    rows = rows_of(obj, None, 4096)
    tg = obj.build(TargetNetworks.of(None), x0, x1, False, rows, Progress())
    assert abs(rows.plugin.double().mean().item() - 0.3) < 0.03
    torch.testing.assert_close(tg.v[~rows.plugin], path.velocity(x0, x1)[~rows.plugin])
    torch.testing.assert_close(tg.v[rows.plugin], plugin_velocity(tg.x_t, tg.t, x1)[rows.plugin])


# ----------------------------------------------------------------------------- terminal times
@pytest.mark.parametrize("step,share", [(0, 1.0), (10000, 2 / 3), (20000, 0.0), (50000, 0.0)])
def test_the_terminal_share_follows_the_arccos_schedule(step, share):
    """(2 / pi) arccos(step / 20000): all interval rows end at the data at the start, none from step 20000."""
    obj = ESC()
    assert obj.terminal_share(Progress(step, 10**6)) == pytest.approx(share, abs=1e-12)
    rows = rows_of(obj, None, 8192, step)
    ends = (rows.t + rows.d - 1).abs() < 1e-6
    assert torch.equal(rows.terminal, rows.interval & ends)
    assert abs(rows.terminal[rows.interval].double().mean().item() - share) < 0.04
    assert (rows.d[~rows.interval] == 0).all() and rows.interval.sum() == 2048
    assert ESC(terminal_steps=0).terminal_share(Progress(0)) == 0.0


# ----------------------------------------------------------------------------- targets
def test_targets_are_the_closed_form_with_guidance_and_warmup(make_batch):
    """With u linear: guided rows w = omega v + kappa u(x, t, 0, y) + (1 - omega - kappa) u(x, t, 0, null),
    other rows w = v (no plug-in here); interval rows add warm * d * (a w + b - c)."""
    x1, x0, _ = make_batch(64, (3,))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    field = LinearField()
    obj = ESC(num_classes=10, plugin_share=0.0, cfg_omega=0.6, cfg_kappa=0.3, cfg_t_min=0.3, cfg_t_max=0.8)
    obj = ESC.from_knobs(**{**obj.args(), "num_classes": 10, "derivative_warmup_steps": 100})
    rows = rows_of(obj, y, step=25)
    tg = obj.build(TargetNetworks.of(field), x0, x1, True, rows, Progress(25))
    x_t, v, t, d = tg.x_t, path.velocity(x0, x1), tg.t, tg.d
    guided = (t >= 0.3) & (t <= 0.8) & (tg.y != 10)
    assert guided.any() and (~guided & (tg.y != 10)).any() and (tg.y == 10).any() and rows.interval.any()
    zero = torch.zeros_like(t)
    cond, null = field(x_t, t, zero, tg.y), field(x_t, t, zero, torch.full_like(tg.y, 10))
    w = torch.where(guided[:, None], 0.6 * v + 0.3 * cond + 0.1 * null, v)
    expected = w + 0.25 * d[:, None] * (field.a * w + field.b - field.c)
    torch.testing.assert_close(tg.v, expected)
    unguided = obj.build(TargetNetworks.of(field), x0, x1, False, rows, Progress(25))  # no labels: no guidance
    torch.testing.assert_close(unguided.v, v + 0.25 * d[:, None] * (field.a * v + field.b - field.c))


def test_at_the_start_of_the_warmup_the_target_is_the_velocity(make_batch):
    """warm = step / derivative_warmup_steps = 0: every target is the row's velocity (plug-in or path)."""
    x1, x0, _ = make_batch(32)
    obj = ESC(derivative_warmup_steps=10)
    rows = rows_of(obj, None, 32)
    tg = obj.build(TargetNetworks.of(LinearField()), x0, x1, False, rows, Progress(0, 100))
    assert rows.interval.any() and rows.plugin.any() and (~rows.plugin).any()
    expected = torch.where(rows.plugin[:, None], plugin_velocity(tg.x_t, tg.t, x1), path.velocity(x0, x1))
    torch.testing.assert_close(tg.v, expected)
    later = obj.build(TargetNetworks.of(LinearField()), x0, x1, False, rows, Progress(5, 100))
    assert not torch.allclose(later.v, expected)


def test_without_its_parts_esc_is_meanflow(make_batch):
    """No terminal rows, no plug-in, no guidance, no dropout: MeanFlow's targets on the same draws."""
    x1, x0, _ = make_batch(64)
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    esc = ESC(num_classes=10, terminal_steps=1, plugin_share=0.0, cfg_kappa=0.0, class_dropout=0.0)
    meanflow = MeanFlow(num_classes=10, class_dropout=0.0)
    a = esc.targets(LinearField(), x1, y, torch.Generator().manual_seed(3), Progress(5, 10), x0=x0)
    b = meanflow.targets(LinearField(), x1, y, torch.Generator().manual_seed(3), Progress(5, 10), x0=x0)
    for field in ("x_t", "t", "d", "v", "y", "kind"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), msg=field)


# ----------------------------------------------------------------------------- cost model
@pytest.mark.parametrize(
    "knobs,classes",
    [({}, 10), ({}, 0), ({"cfg_kappa": 0.0}, 10), ({"cfg_t_min": 0.5, "class_dropout": 0.3}, 10)],
)
def test_the_cost_model_counts_the_passes_made(make_batch, knobs, classes):
    """Rows through the network while building targets: 2 per guided row (conditional and null), n for the
    product on the n interval rows (counted as 2 passes: primal and tangent); on a large batch the
    expected passes of :meth:`ESC.passes_per_row` match."""
    b = 4096
    x1, x0, g = make_batch(b)
    y = torch.randint(0, 10, (b,), generator=torch.Generator().manual_seed(2)) if classes else None
    obj = ESC(num_classes=classes, **knobs)
    net = Counter()
    tg = obj.targets(net, x1, y, g, Progress(100), x0=x0)
    n = int((tg.kind == 0).sum())
    made = 1 + (2 * n + (net.rows - n)) / b
    forward, backward = obj.passes_per_row(b)
    assert backward == 1.0 and forward == pytest.approx(made, abs=0.05)
    guided = net.rows - n
    assert (guided == 0) == (classes == 0 or knobs.get("cfg_kappa") == 0.0)
    if not knobs and classes:  # the authors' B/2 setting: every kept label is guided, at every time
        assert forward == pytest.approx(1 + 2 * 0.25 + 2 * 0.9)


# ----------------------------------------------------------------------------- knobs, sampling, training
def test_defaults_and_bad_knobs():
    obj = build_objective("esc", 10)
    recipe = obj.recipe
    assert (recipe.time_sampler, recipe.time_mu, recipe.loss_weight, recipe.adaptive_eps, recipe.target_network) == (
        "logit-normal",
        0.4,
        "adaptive",
        1e-3,
        "online",
    )
    assert (obj.interval_share, obj.class_dropout, obj.terminal_steps, obj.plugin_share) == (0.25, 0.1, 20000, 0.5)
    assert (obj.cfg_omega, obj.cfg_kappa, obj.cfg_t_min, obj.cfg_t_max, obj.derivative_warmup_steps) == (
        1.0,
        0.5,
        0.0,
        1.0,
        0,
    )
    assert obj.sampling_d is None and obj.row_kinds == ("interval", "flow")
    for knob, value in [
        ("plugin_share", 1.5),
        ("terminal_steps", -1),
        ("cfg_t_max", 2.0),
        ("derivative_warmup_steps", 0.5),
    ]:
        with pytest.raises(ValueError, match=knob):
            build_objective("esc", 10, {knob: value})


def test_no_gradient_reaches_the_target(make_batch):
    x1, x0, g = make_batch(16)
    lin = nn.Linear(3, 3)
    model = lambda x, t, d, y: lin(x) * (1 + t[:, None]) + d[:, None]  # noqa: E731
    y = torch.randint(0, 4, (16,))
    tg = ESC(num_classes=4).targets(model, x1, y, generator=g, x0=x0)
    assert not tg.v.requires_grad
