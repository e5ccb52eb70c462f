"""α-Flow: its target against the paper's equation written out here (fixed noise, closed-form networks, float64),
its limits (α = 1: trajectory flow matching's target; α = 0: our MeanFlow's target on the same draws), its α
schedule against the authors' get_ratio written out, guidance in training, its loss (α on the rows with an
interval, the adaptive weight per element), its cost model, its re-noising sampler, and a fine-tuning run
from a flow-matching run that samples in one step."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from shortcut_models import path
from shortcut_models.cli import main
from shortcut_models.inference import load_model
from shortcut_models.objectives import AlphaFlow, FlowMatching, MeanFlow, Progress, build_objective
from shortcut_models.objectives.alpha_flow import WeightedTargets
from shortcut_models.sampling import renoising_sample, sample
from shortcut_models.training import Trainer

CLASSES = 5
ROWS = 12  # flow_share 0.5: rows 0-5 have an interval, rows 6-11 have d = 0


class LinearField(nn.Module):
    """u(x, t, d, y) = a x + b t + c d + e y (y the label, null = CLASSES): D u along (v, 1, -1) is a v + b - c."""

    num_classes = CLASSES

    def __init__(self, a=0.7, b=-0.3, c=1.9, e=0.05):
        super().__init__()
        self.a, self.b, self.c, self.e = a, b, c, e
        self.rows_seen = 0

    def forward(self, x, t, d, y):
        self.rows_seen += x.shape[0]
        return self.a * x + self.b * t[:, None] + self.c * d[:, None] + self.e * y[:, None].to(x.dtype)


class CurvedField(nn.Module):
    """A nonlinear field, so the step along V and the derivative see curvature: u = tanh(W x) (1 + t) + d^2 + 0.1 y."""

    num_classes = CLASSES

    def __init__(self):
        super().__init__()
        self.w = torch.tensor([[0.9, -0.4, 0.2], [0.3, 0.8, -0.5], [-0.6, 0.1, 0.7]], dtype=torch.float64)

    def forward(self, x, t, d, y):
        out = torch.tanh(x @ self.w.to(x.dtype)) * (1 + t[:, None]) + d[:, None] ** 2
        return out + 0.1 * y[:, None].to(x.dtype)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(ROWS, 3, generator=g, dtype=torch.float64)
    x1 = torch.randn(ROWS, 3, generator=g, dtype=torch.float64)
    return x0, x1, torch.arange(ROWS) % CLASSES


def at_alpha(alpha, **knobs):
    """α-Flow with α held at ``alpha`` (a constant schedule), no target clamp unless given."""
    args = {"alpha_schedule": "constant", "alpha_initial": alpha, "target_clamp": 0.0, **knobs}
    return build_objective("alpha-flow", CLASSES, args)


def targets(objective, net, seed=1, progress=None):
    x0, x1, y = batch()
    return objective.targets(net, x1, y, torch.Generator().manual_seed(seed), progress, x0=x0), x0, x1


# ------------------------------------------------------------ the target


@pytest.mark.parametrize("alpha", [0.3, 0.75])
def test_target_is_the_papers_equation_written_out(alpha):
    net = LinearField()
    tg, x0, x1 = targets(at_alpha(alpha, class_dropout=0.0), net)
    v = x1 - (1 - 1e-5) * x0
    n = ROWS // 2
    assert tg.kind.tolist() == [0] * n + [1] * n
    assert torch.allclose(tg.x_t, path.interpolate(x0, x1, tg.t), atol=1e-12)
    assert (tg.d[:n] > 0).all() and (tg.d[n:] == 0).all() and (tg.t + tg.d <= 1).all()
    for i in range(n):  # one step of alpha d along v, then the network over the rest of the interval
        t, d, y = tg.t[i].double(), tg.d[i].double(), float(tg.y[i])
        s = alpha * d
        shifted = tg.x_t[i] + s * v[i]
        u_next = net.a * shifted + net.b * (t + s) + net.c * (d - s) + net.e * y
        expected = alpha * v[i] + (1 - alpha) * u_next
        assert torch.allclose(tg.v[i], expected, atol=1e-6), i
    assert torch.allclose(tg.v[n:], v[n:], atol=1e-12)  # rows with d = 0: flow matching
    assert tg.weight.tolist() == pytest.approx([alpha] * n + [1.0] * n)


def test_target_depends_on_the_step_along_v_not_only_on_the_start():
    """A changed target (the network at the start instead of the shifted point) fails the equation."""
    net = CurvedField()
    tg, x0, x1 = targets(at_alpha(0.5, class_dropout=0.0), net)
    v, n = x1 - (1 - 1e-5) * x0, ROWS // 2
    t, d = tg.t[:n], tg.d[:n]
    s = 0.5 * d
    shifted = tg.x_t[:n] + s[:, None].double() * v[:n]
    right = 0.5 * v[:n] + 0.5 * net(shifted, t + s, d - s, tg.y[:n])
    unshifted = 0.5 * v[:n] + 0.5 * net(tg.x_t[:n], t + s, d - s, tg.y[:n])
    assert torch.allclose(tg.v[:n], right, atol=1e-6)
    assert (tg.v[:n] - unshifted).abs().max() > 1e-3


def test_alpha_one_is_trajectory_flow_matching_without_calling_the_network():
    net = LinearField()
    tg, x0, x1 = targets(at_alpha(1.0), net)
    fm = FlowMatching(num_classes=CLASSES).targets(None, x1, batch()[2], torch.Generator().manual_seed(1), x0=x0)
    assert torch.allclose(tg.v, fm.v, atol=1e-12)  # every row regresses the path velocity, whatever its interval
    assert net.rows_seen == 0 and (tg.d[: ROWS // 2] > 0).all()
    assert tg.weight.tolist() == [1.0] * ROWS


@pytest.mark.parametrize("net", [LinearField(), CurvedField()], ids=["linear", "curved"])
def test_alpha_zero_is_our_meanflow_target_on_the_same_draws(net):
    af, x0, x1 = targets(at_alpha(0.0), net)
    mf_objective = MeanFlow(num_classes=CLASSES, interval_share=0.5, flow_row_time="first")
    mf = mf_objective.targets(net, x1, batch()[2], torch.Generator().manual_seed(1), x0=x0)
    for name in ("x_t", "t", "d", "y", "kind"):
        assert torch.equal(getattr(af, name), getattr(mf, name)), name  # the same draws
    assert torch.allclose(af.v, mf.v, atol=1e-10)
    assert af.weight.tolist() == [1.0] * ROWS
    if isinstance(net, LinearField):  # and the closed form: v + d (a v + b - c)
        v, n = x1 - (1 - 1e-5) * x0, ROWS // 2
        closed = v[:n] + af.d[:n, None].double() * (net.a * v[:n] + net.b - net.c)
        assert torch.allclose(af.v[:n], closed, atol=1e-6)


def test_small_alpha_moves_the_target_towards_the_meanflow_identity():
    """(T_alpha - u) / alpha -> T_MeanFlow - u as alpha -> 0: the identity is the curriculum's first order."""
    net = CurvedField()
    x0, x1, y = batch()
    mf = targets(at_alpha(0.0), net)[0]
    n = ROWS // 2
    u = net(mf.x_t[:n], mf.t[:n], mf.d[:n], mf.y[:n])
    errors = []
    for alpha in (1e-2, 1e-3):
        tg = targets(at_alpha(alpha, alpha_clamp=0.0), net)[0]
        slope = (tg.v[:n] - u) / alpha
        errors.append((slope - (mf.v[:n] - u)).abs().max().item())
    assert errors[1] < 2e-2 and errors[1] < errors[0] / 5, errors  # first order in alpha


class TheirTime:
    """The authors' view of a network u of ours: time t_a = 1 - t (noise at 1), net_a(z, r_a, t_a) =
    -u(z, 1 - t_a, t_a - r_a), the average velocity from t_a down to r_a."""

    def __init__(self, net, y):
        self.net, self.y = net, y

    def __call__(self, z, r_a, t_a):
        return -self.net(z, 1 - t_a, t_a - r_a, self.y)


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_target_is_the_authors_formulation_in_their_reversed_time(alpha):
    """Their discrete target (dt V_a + (t_a - dt - r_a) u_next) / (t_a - r_a), clamped, and their JVP target
    V_a - (t_a - r_a) du/dt_a along (V_a, 0, 1), written in their time with their velocity V_a = e - x, are
    minus ours, with guidance in training (their XL/2 omega, kappa) on every row."""
    omega, kappa, clamp = 0.2, 0.92, 1.5
    net = CurvedField()
    objective = at_alpha(alpha, cfg_omega=omega, cfg_kappa=kappa, class_dropout=0.0, target_clamp=clamp)
    tg, x0, x1 = targets(objective, net)
    n = ROWS // 2
    theirs = TheirTime(net, tg.y)
    t_a, r_a = 1 - tg.t.double(), 1 - (tg.t + tg.d).double()
    z = tg.x_t
    v_a = (1 - 1e-5) * x0 - x1  # their e - x (with our path's eps)
    null = TheirTime(net, torch.full_like(tg.y, CLASSES))
    v_a = omega * v_a + kappa * theirs(z, t_a, t_a) + (1 - omega - kappa) * null(z, t_a, t_a)
    assert torch.allclose(tg.v[n:], -v_a[n:], atol=1e-6)
    z, t_a, r_a, v_a = z[:n], t_a[:n], r_a[:n], v_a[:n]
    theirs = TheirTime(net, tg.y[:n])
    gap = (t_a - r_a)[:, None]
    if alpha > 0:
        dt = alpha * gap
        u_next = theirs(z - dt * v_a, r_a, t_a - dt[:, 0]) if alpha < 1 else torch.zeros_like(z)
        target_a = ((dt * v_a + (gap - dt) * u_next) / gap).clamp(-clamp, clamp)
    else:
        _, dudt = torch.func.jvp(theirs, (z, r_a, t_a), (v_a, torch.zeros_like(r_a), torch.ones_like(t_a)))
        target_a = v_a - gap * dudt
    assert torch.allclose(tg.v[:n], -target_a, atol=1e-6)


# ------------------------------------------------------------ the schedule


def authors_get_ratio(share, initial=1.0, end=0.0, begin=0.0, stop=1.0, gamma=25.0, clamp=0.005):
    """The authors' sigmoid scheduler over shares of the run, with its snap to 0 and 1."""
    if share < begin:
        value = initial
    elif share > stop:
        value = end
    else:
        value = initial + (end - initial) / (1 + math.exp(-gamma * (share - (begin + stop) / 2) / (stop - begin)))
    return 0.0 if value < clamp else 1.0 if value > 1 - clamp else value


@pytest.mark.parametrize("span", [(0.0, 1.0), (0.5, 1e6 / 1.2e6)], ids=["B/2", "XL/2"])
def test_sigmoid_schedule_is_the_authors(span):
    objective = build_objective("alpha-flow", 0, {"alpha_begin": span[0], "alpha_end": span[1]})
    for i in range(101):
        share = i / 100
        assert objective.alpha_at(share) == pytest.approx(
            authors_get_ratio(share, begin=span[0], stop=span[1]), abs=1e-12
        )
    assert objective.alpha(Progress(0, 100)) == 1.0 and objective.alpha(Progress(99, 100)) == 0.0


def test_linear_and_step_schedules_and_a_bad_span():
    linear = build_objective("alpha-flow", 0, {"alpha_schedule": "linear", "alpha_begin": 0.2, "alpha_end": 0.6})
    assert linear.alpha_at(0.1) == 1.0 and linear.alpha_at(0.4) == pytest.approx(0.5) and linear.alpha_at(0.7) == 0.0
    step = build_objective("alpha-flow", 0, {"alpha_schedule": "step", "alpha_begin": 0.3, "alpha_end": 0.3})
    assert step.alpha_at(0.29) == 1.0 and step.alpha_at(0.31) == 0.0
    with pytest.raises(ValueError, match="alpha_end must be larger than alpha_begin"):
        build_objective("alpha-flow", 0, {"alpha_begin": 0.5, "alpha_end": 0.5})


# ------------------------------------------------------------ guidance and labels


def test_guidance_in_training_mixes_the_network_at_d_zero_on_the_window():
    omega, kappa, alpha = 0.2, 0.92, 0.5
    net = LinearField()
    objective = at_alpha(alpha, cfg_omega=omega, cfg_kappa=kappa, cfg_t_min=0.25, class_dropout=0.0)
    tg, x0, x1 = targets(objective, net)
    v, n = x1 - (1 - 1e-5) * x0, ROWS // 2
    t, d = tg.t.double(), tg.d.double()

    def field(x, t, d, y):
        return net.a * x + net.b * t[:, None] + net.c * d[:, None] + net.e * y[:, None].double()

    zero, null = torch.zeros_like(t), torch.full_like(tg.y, CLASSES)
    guided = omega * v + kappa * field(tg.x_t, t, zero, tg.y) + (1 - omega - kappa) * field(tg.x_t, t, zero, null)
    inside = (t >= 0.25)[:, None]
    big_v = torch.where(inside, guided, v)
    assert inside.any() and not inside.all()
    assert torch.allclose(tg.v[n:], big_v[n:], atol=1e-6)  # rows with d = 0 regress the guided velocity
    s = alpha * d[:n, None]
    expected = alpha * big_v[:n] + (1 - alpha) * field(
        tg.x_t[:n] + s * big_v[:n], t[:n] + s[:, 0], d[:n] - s[:, 0], tg.y[:n]
    )
    assert torch.allclose(tg.v[:n], expected, atol=1e-6)


def test_labels_are_dropped_only_inside_the_guidance_window():
    objective = at_alpha(1.0, class_dropout=0.9, cfg_t_min=0.5)
    x1 = torch.randn(400, 3, generator=torch.Generator().manual_seed(0))
    y = torch.arange(400) % CLASSES
    tg = objective.targets(LinearField(), x1, y, torch.Generator().manual_seed(1))
    dropped = tg.y == CLASSES
    assert not dropped[tg.t < 0.5].any()
    assert 0.8 < dropped[tg.t >= 0.5].double().mean() < 0.97


# ------------------------------------------------------------ the loss


class Offset(nn.Module):
    """Predicts the target plus a known offset per row, so the loss is known in closed form."""

    def __init__(self, target, offset):
        super().__init__()
        self.target, self.offset = target, offset
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x, t, d, y):
        return self.scale * (self.target + self.offset)


def test_loss_weighs_interval_rows_by_alpha_and_adapts_per_element():
    alpha = 0.4
    tg = targets(at_alpha(alpha, class_dropout=0.0), LinearField())[0]
    offset = torch.linspace(0.1, 1.2, ROWS, dtype=torch.float64)[:, None].expand(ROWS, 3)
    model = Offset(tg.v, offset)
    loss, logs = at_alpha(alpha).loss(model, tg)
    m = offset[:, 0] ** 2  # each row's mean squared error
    weight = torch.tensor([alpha] * (ROWS // 2) + [1.0] * (ROWS // 2), dtype=torch.float64)
    assert loss.item() == pytest.approx((weight * m / (m + 1e-3)).mean().item(), rel=1e-6)
    assert logs["loss"].item() == pytest.approx(m.mean().item(), rel=1e-6)
    assert logs["loss_interval"].item() == pytest.approx(m[: ROWS // 2].mean().item(), rel=1e-6)
    summed = at_alpha(alpha, adaptive_per_element=False).loss(model, tg)[0]
    assert summed.item() == pytest.approx((weight * 3 * m / (3 * m + 1e-3)).mean().item(), rel=1e-6)


def test_split_targets_keep_their_weights():
    tg = targets(at_alpha(0.4, class_dropout=0.0), LinearField())[0]
    chunks = tg.split(3)
    assert all(isinstance(c, WeightedTargets) for c in chunks)
    assert torch.equal(torch.cat([c.weight for c in chunks]), tg.weight)
    assert torch.equal(torch.cat([c.v for c in chunks]), tg.v)


# ------------------------------------------------------------ cost


def test_cost_model_counts_the_rows_the_network_sees():
    for alpha, passes in ((1.0, 0), (0.5, 1)):
        net = LinearField()
        targets(at_alpha(alpha), net)
        assert net.rows_seen == passes * ROWS // 2
        assert at_alpha(alpha).passes_at(alpha, ROWS) == (1.0 + passes / 2, 1.0)
    assert at_alpha(0.0).passes_at(0.0, ROWS) == (2.0, 1.0)  # a product on half the rows: two forwards each
    guided = at_alpha(0.5, cfg_kappa=0.5)  # omega 1, kappa 0.5: both branches, on every row (window [0, 1])
    assert guided.passes_at(0.5, ROWS) == (1.0 + 0.5 + 2.0, 1.0)
    # over the default run: a third at α = 1, a third in between, a third at α = 0 (roughly): 1 + f on average
    assert build_objective("alpha-flow", 0).passes_per_row(64)[0] == pytest.approx(1.5, abs=0.01)


# ------------------------------------------------------------ sampling


def test_renoising_sampler_one_step_is_ours_and_two_steps_the_authors():
    net = CurvedField()
    noise = torch.randn(6, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = torch.arange(6) % CLASSES
    one = renoising_sample(net, noise, [0.0], y)
    assert torch.allclose(one, sample(net, noise, 1, y), atol=1e-12)
    two = renoising_sample(net, noise, [0.0, 0.45], y, generator=torch.Generator().manual_seed(9))
    fresh = torch.randn(6, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    ones = torch.ones(6, dtype=torch.float64)
    x1_hat = noise + net(noise, 0 * ones, ones, y)
    x = (1 - (1 - 1e-5) * 0.45) * fresh + 0.45 * x1_hat
    assert torch.allclose(two, x + 0.55 * net(x, 0.45 * ones, 0.55 * ones, y), atol=1e-12)
    with pytest.raises(ValueError, match="times must start at 0"):
        renoising_sample(net, noise, [0.2, 0.5], y)


# ------------------------------------------------------------ fine-tuning from flow matching


def test_fine_tunes_from_a_flow_matching_run_and_samples_in_one_step(tmp_path, nano_config):
    source = tmp_path / "flow"
    Trainer(nano_config("steps=2", objective="flow"), source, progress=False).run()
    tuned = Trainer(
        nano_config("steps=3", f"init_from={source}", objective="alpha-flow"), tmp_path / "af", progress=False
    )
    assert isinstance(tuned.objective, AlphaFlow)
    tuned.run()
    loaded = load_model(tmp_path / "af", "cpu")
    x = loaded.generate(4, 1, seed=0, labels=torch.arange(4) % max(loaded.num_classes, 1))
    assert torch.isfinite(x).all()


@pytest.mark.slow
def test_trains_on_latents_and_samples_in_one_step(tiny_latents, tmp_path, capsys):
    """A tiny latent run (the tiny random VAE of tests/conftest.py) trains through all three phases of α
    (three steps: α = 1, then between, then 0) and ``shortcut sample --steps 1`` decodes varied images."""
    _, cache = tiny_latents
    run = tmp_path / "run"
    args = [f"data=latents:{cache}", "model=DiT-Nano", "batch_size=8", "steps=3", "sample_steps=[1]"]
    args += ["eval_every=0", "logger=none", "class_conditional=false"]
    schedule = {"alpha_schedule": "linear", "alpha_begin": 0.1, "alpha_end": 0.5}
    alphas = [build_objective("alpha-flow", 0, schedule).alpha(Progress(i, 3)) for i in range(3)]
    assert alphas[0] == 1.0 and 0 < alphas[1] < 1 and alphas[2] == 0.0
    args += [f"{k}={v}" for k, v in schedule.items()]
    assert main(["train", "--objective", "alpha-flow", "--out", str(run), "--quiet", *args]) == 0
    out = tmp_path / "s.npz"
    assert main(["sample", "--ckpt", str(run), "--steps", "1", "--num", "2", "--seed", "1", "--out", str(out)]) == 0
    images = np.load(out)["arr_0"]
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8 and all(img.std() > 1 for img in images)
