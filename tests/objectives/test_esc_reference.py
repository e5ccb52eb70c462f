"""ESC against its authors' PyTorch code (explicit-shortcut/loss/esc_loss.py, class ESCLoss), number for number.

The reference runs in reversed time (s = 1 noise, z_s = (1 - s) x + s noise, interval [r, s], velocity
noise - x); its network is a thin adapter of ours, ref(z, r, s, y) = -ours(z, 1 - s, s - r, y), and its
target is minus ours. Our path keeps eps = 1e-5 of noise at the data; the reference's has none, so these
tests set ``path.EPS`` to 0.

How the reference's random draws are driven: ``torch.rand``, ``torch.randn`` and ``torch.randn_like`` are
replaced, while the reference runs, by queues of given tensors in the order ESCLoss calls them (label
dropout, the two times of each row, the terminal draw, the r = s draw, the noise, the plug-in draw), each
checked for the shape asked. The tensors are made from our own choices (:meth:`ESC.draw_rows`): uniforms
of 0 or 1 put a row on the side of each threshold we chose, normals are the logits of our times. Every
comparison is float64 (our times are float32 values, handed to the reference exactly).
"""

import math

import pytest
import torch
from torch import nn

from shortcut_models import path
from shortcut_models.objectives import ESC, Progress, TargetNetworks
from shortcut_models.objectives.esc import plugin_velocity
from shortcut_models.seeding import RowDraws

SHAPE = (2, 4, 4)  # the reference's kernel and einsum need [B, C, H, W] images


class Net(nn.Module):
    """A small deterministic network, nonlinear in x, t, d and the label: ours, model(x_t, t, d, y)."""

    def __init__(self, classes: int, width: int = 32):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        dim = math.prod(SHAPE)
        self.inp = nn.Parameter(torch.randn(dim + 2, width, generator=g, dtype=torch.float64) / math.sqrt(dim))
        self.emb = nn.Parameter(torch.randn(classes + 1, width, generator=g, dtype=torch.float64))
        self.out = nn.Parameter(torch.randn(width, dim, generator=g, dtype=torch.float64) / math.sqrt(width))

    def forward(self, x, t, d, y):
        h = torch.cat([x.flatten(1), 3 * t.to(x.dtype)[:, None], 2 * d.to(x.dtype)[:, None]], 1)
        return (torch.tanh(h @ self.inp + self.emb[y]) @ self.out).view_as(x)


class Reference(nn.Module):
    """The reference's view of ``net``: ref(z, r, s, y) = -net(z, 1 - s, s - r, y); y None is the null label."""

    def __init__(self, net: Net, classes: int):
        super().__init__()
        self.net, self.num_classes = net, classes

    def forward(self, z, r, s, y=None, **kwargs):
        y = torch.full((z.shape[0],), self.num_classes, dtype=torch.long) if y is None else y
        return -self.net(z, 1 - s, s - r, y)


class Draws:
    """Stand-ins for torch.rand / randn / randn_like that hand out given tensors in order."""

    def __init__(self, rand, randn, randn_like):
        self.queues = {"rand": list(rand), "randn": list(randn), "randn_like": list(randn_like)}

    def take(self, kind, shape):
        value = self.queues[kind].pop(0)
        assert tuple(value.shape) == tuple(shape), (kind, tuple(shape), tuple(value.shape))
        return value.clone()

    def install(self, monkeypatch):
        monkeypatch.setattr(torch, "rand", lambda *size, **kw: self.take("rand", size))
        monkeypatch.setattr(torch, "randn", lambda *size, **kw: self.take("randn", size))
        monkeypatch.setattr(torch, "randn_like", lambda x, **kw: self.take("randn_like", x.shape))

    def used_up(self):
        return all(not q for q in self.queues.values())


def below(mask):
    """Uniforms that fall below any threshold in (0, 1] exactly on ``mask``."""
    return torch.where(mask, 0.0, 1.0).double()


@pytest.fixture
def no_eps(monkeypatch):
    monkeypatch.setattr(path, "EPS", 0.0)


@pytest.fixture
def esc_loss(esc_code):
    return esc_code("loss.esc_loss")


def reference_loss(module, ours: ESC, warmup: int):
    """ESCLoss with the settings of ``ours`` (its time window given back in the reference's time)."""
    return module.ESCLoss(
        loss_type="adaptive",
        time_sampler="logit_normal",
        time_mu=-ours.recipe.time_mu,
        time_sigma=ours.recipe.time_sigma,
        ratio_r_not_equal_t=ours.interval_share,
        adaptive_p=ours.recipe.adaptive_power,
        label_dropout_prob=ours.class_dropout,
        cfg_omega=ours.cfg_omega,
        cfg_kappa=ours.cfg_kappa,
        cfg_min_t=1 - ours.cfg_t_max,
        cfg_max_t=1 - ours.cfg_t_min,
        grad_warmup_steps=warmup,
        use_vplug=True,
        vplug_select_prob=ours.plugin_share,
    )


def time_normals(ours: ESC, rows):
    """The reference's two normal draws per row that give our times: sorted, r = 1 - t - d and s = 1 - t
    (r is replaced where the row ends at the data or has d = 0, so any r below s does there)."""
    s = 1 - rows.t.double()
    r = torch.where(rows.interval & ~rows.terminal, 1 - rows.t.double() - rows.d.double(), s / 2)
    r = torch.where(rows.interval, r, s)
    logit = lambda p: torch.log(p) - torch.log1p(-p)  # noqa: E731
    return (
        torch.stack([logit(r), logit(s)], 1) + ours.recipe.time_mu
    ) / ours.recipe.time_sigma  # (logit - mu_ref) / sigma


def run_reference(monkeypatch, ref_loss, net, classes, x0, x1, y, ours, rows, progress):
    """The reference's __call__ on our choices: (its target in our sign, its per-row loss, its mean squared error)."""
    rand = [below(rows.labels == classes)] if y is not None else []
    rand += [below(rows.terminal), below(~rows.interval), below(rows.plugin)]
    draws = Draws(rand, [time_normals(ours, rows)], [x0])
    captured = {}
    original = ref_loss._tgt_u

    def tgt_u(*args, **kwargs):
        captured["target"] = original(*args, **kwargs)
        return captured["target"]

    monkeypatch.setattr(ref_loss, "_tgt_u", tgt_u)
    model = Reference(net, classes)
    kwargs = {
        "y": y,
        "step_r": min(1.0, progress.step / ours.terminal_steps),
        "global_step": progress.step,
    }
    with monkeypatch.context() as m:
        draws.install(m)
        loss, mse = ref_loss(model, model, x1, kwargs)
    assert draws.used_up()
    return -captured["target"], loss, mse


def batch(b, classes, seed):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(b, *SHAPE, generator=g, dtype=torch.float64)
    x0 = torch.randn(b, *SHAPE, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (b,), generator=g) if classes else None
    return x1, x0, y


SETTINGS = {
    # the authors' ESC-B/2 guidance (omega 1, kappa 0.5, every time) and their XL/2 one (window s <= 0.75)
    "B/2": {"cfg_omega": 1.0, "cfg_kappa": 0.5, "cfg_t_min": 0.0, "cfg_t_max": 1.0},
    "XL/2": {"cfg_omega": 0.2, "cfg_kappa": 0.92, "cfg_t_min": 0.25, "cfg_t_max": 1.0},
}


@pytest.mark.parametrize("classes,setting", [(5, "B/2"), (5, "XL/2"), (0, "B/2")])
def test_targets_and_loss_equal_the_references(esc_loss, no_eps, monkeypatch, classes, setting):
    """Conditional (guidance in training active, some labels dropped) and unconditional batches, in the
    middle of the terminal-time schedule and of the derivative warm-up."""
    b, warmup, progress = 32, 100, Progress(40, 1000)
    ours = ESC(
        num_classes=classes,
        interval_share=0.5,
        class_dropout=0.2,
        terminal_steps=100,
        derivative_warmup_steps=warmup,
        **SETTINGS[setting],
    )
    x1, x0, y = batch(b, classes, seed=4)
    net = Net(classes)
    draws = RowDraws.for_batch(b, torch.Generator().manual_seed(7), torch.device("cpu"))
    rows = ours.draw_rows(y, draws, ours.kind_rows(b)[0], progress)
    with torch.no_grad():
        tg = ours.build(TargetNetworks.of(net), x0, x1, y is not None, rows, progress)
    loss, logs = ours.loss(net, tg)

    ref_target, ref_loss, ref_mse = run_reference(
        monkeypatch, reference_loss(esc_loss, ours, warmup), net, classes, x0, x1, y, ours, rows, progress
    )
    torch.testing.assert_close(tg.v, ref_target, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss.double(), ref_loss.mean(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logs["loss"].double(), ref_mse, atol=1e-5, rtol=1e-5)

    # not vacuous: the batch has every kind of row, and each part of the method moves the targets
    guided = ours.guided_rows(y is not None, rows)
    assert rows.terminal.any() and (rows.interval & ~rows.terminal).any() and (~rows.interval).any()
    assert rows.plugin.any() and (~rows.plugin).any()
    if classes:
        assert (
            guided.any()
            and (rows.labels == classes).any()
            and (~guided & (rows.labels != classes)).any() == (setting == "XL/2")
        )
    switched_off = {
        "plug-in": {"plugin_share": 0.0},
        "warm-up": {"derivative_warmup_steps": 0},
        **({"guidance": {"cfg_omega": 1.0, "cfg_kappa": 0.0}} if classes else {}),
    }
    for part, change in switched_off.items():
        other = ESC.from_knobs(**{**ours.args(), **change, "num_classes": classes})
        with torch.no_grad():
            moved = other.build(TargetNetworks.of(net), x0, x1, y is not None, rows, progress).v
        assert (moved - ref_target).abs().max() > 1e-3, part


def test_the_plugin_velocity_is_the_references_kernel_estimate(esc_loss, no_eps):
    """Its ``_estimate_vplug`` on the same data, noise and times (the reference's sign)."""
    x1, x0, _ = batch(24, 0, seed=5)
    t = torch.rand(24, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 0.9
    x_t = path.interpolate(x0, x1, t)
    s = (1 - t).view(-1, 1, 1, 1)
    ones = torch.ones_like(s)
    reference = esc_loss.ESCLoss()._estimate_vplug(x1, 1 - s, s, -ones, ones, x_t)
    ours = plugin_velocity(x_t, t, x1)
    torch.testing.assert_close(ours, -reference, atol=1e-10, rtol=1e-10)
    assert (ours - path.velocity(x0, x1)).abs().max() > 0.1  # not the conditional velocity


@pytest.mark.parametrize("step", [0, 1, 5000, 10000, 19999, 20000, 30000])
def test_the_terminal_time_schedule_is_the_references(esc_loss, monkeypatch, step):
    """The rows whose r is set to 0 by ``sample_time_steps`` (step_r = min(1, step / term_zero_steps), as
    its train.py) are those whose uniform falls below our ``terminal_share``, on the same uniforms."""
    ours = ESC()  # terminal_steps 20000, the authors' term-zero-steps
    u = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000
    draws = Draws([u, torch.ones(1000)], [torch.zeros(1000, 2)], [])  # no row made r = s
    with monkeypatch.context() as m:
        draws.install(m)
        r, _, _ = reference_loss(esc_loss, ours, 0).sample_time_steps(1000, min(1.0, step / 20000), "cpu")
    assert torch.equal(r == 0, u < ours.terminal_share(Progress(step, 10**6)))
