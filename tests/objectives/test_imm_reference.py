"""IMM against ESC's port (explicit-shortcut/loss/imm_loss.py, utils/, sampler.py), in float64.

The two run on the same noise, times, labels and a deterministic network: ESC's code calls
``model(z, r, t, y)`` in its reversed time (t = 1 noise, z_t = (1 - t) x + t noise, r <= s <= t, the
velocity pointing to the noise) on latents whose noise has standard deviation 0.5, and feeds the
network z / 0.5. The adapter: ESC's images are 0.5 x1 and its noise 0.5 x0, its network is
``-u(z, 1 - t, t - r, y)`` with u ours, and every particle it returns is 0.5 times ours. Our path's
eps (1e-5) is set to 0 for the comparison (ESC's path has none).

How the reference's random draws are driven: ``torch.rand`` and ``torch.randn_like`` are patched to
hand out, in the order ESC's IMMLoss draws them, our label-dropout draws (replayed from our generator),
the uniforms that give our start and end times (derived from our targets' t and d, so the times
agree to float64 rounding) and our noise x0. Its solver is wrapped to record the particles it builds.

With one group per batch the reference's loss is ours exactly. With several, its kernel broadcasts
each group's weights over every group (a [G, G, m, m] loss); the test shows that its mean is
mean_g w_g mean_g' MMD^2 of group g' under the width of group g, built from our pieces, and that
each group fed alone to its ``kernel_loss`` is ours.
"""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from shortcut_models import path
from shortcut_models.objectives import IMM
from shortcut_models.objectives.imm import SIGMA_DATA, kernel_width, mmd2, time_weight
from shortcut_models.sampling import sample

SHAPE = (2, 3, 3)
CLASSES = 3
TOL = {"atol": 1e-5, "rtol": 1e-5}


class Toy(nn.Module):
    """A fixed smooth network u(x, t, d, y) in float64 (defined for negative d too)."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        n = math.prod(SHAPE)
        self.w = torch.randn(n, n, generator=g, dtype=torch.float64) / math.sqrt(n)
        self.c = torch.randn(3, n, generator=g, dtype=torch.float64)
        self.emb = torch.randn(classes + 1, n, generator=g, dtype=torch.float64)
        self.num_classes = classes

    def forward(self, x, t, d, y):
        t, d = t.to(x.dtype)[:, None], d.to(x.dtype)[:, None]
        h = x.flatten(1) @ self.w + 1.3 * t * self.c[0] + 0.8 * d * self.c[1] + torch.sin(3 * d) * self.c[2]
        return (torch.tanh(h + self.emb[y]) - 0.5 * x.flatten(1)).view_as(x)


def esc_network(net):
    """ESC's view of our network: model(z, r, t, y) in its time, its velocity pointing to the noise."""

    def model(z, r, t, y=None):
        y = torch.full((z.shape[0],), net.num_classes) if y is None else y
        return -net(z, 1 - t, t - r, y)

    return model


@pytest.fixture
def esc(esc_code, monkeypatch):
    monkeypatch.setattr(path, "EPS", 0.0)
    return SimpleNamespace(
        imm=esc_code("loss.imm_loss"), sampler=esc_code("sampler"), scheduler=esc_code("utils.scheduler")
    )


def our_batch(rows, conditional, seed=0, objective=None):
    """Our objective, data, noise, labels, the generator's seed and our targets (float64 data and noise)."""
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(rows, *SHAPE, generator=g, dtype=torch.float64)
    x0 = torch.randn(rows, *SHAPE, generator=g, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (rows,), generator=g) if conditional else None
    objective = objective or IMM(num_classes=CLASSES)
    tg = objective.targets(Toy(), x1, y, torch.Generator().manual_seed(seed + 1), x0=x0)
    return objective, x1, x0, y, tg


def run_esc(esc, monkeypatch, objective, x1, x0, y, tg, seed=0):
    """ESC's IMMLoss on our batch: (loss_out, loss_ref, the particles its solver built)."""
    m, rows = objective.group_size, x1.shape[0]
    g = torch.Generator().manual_seed(seed + 1)  # our draws, replayed: times (a), ends (b), dropouts
    torch.rand(rows, generator=g), torch.rand(rows, generator=g)
    dropout = torch.rand(rows, generator=g).double()
    t, d = tg.t[::m].double(), tg.d[::m].double()
    t_esc = 1 - t  # ESC: t = rand * (0.994 - 0) + 0, then r = rand * t
    draws = ([dropout] if y is not None else []) + [t_esc / 0.994, (t_esc - d) / t_esc]
    real_rand = torch.rand

    def rand(*size, **kwargs):
        out = draws.pop(0)
        assert out.shape == torch.Size(size), "ESC's draws changed order or size"
        return out

    solved = []
    real_solver = esc.imm.ddim_solver_condv

    def solver(*args):
        solved.append(real_solver(*args))
        return solved[-1]

    monkeypatch.setattr(torch, "rand", rand)
    monkeypatch.setattr(torch, "randn_like", lambda like: x0.clone())
    monkeypatch.setattr(esc.imm, "ddim_solver_condv", solver)
    loss = esc.imm.IMMLoss(group_size=m, gamma=objective.gamma, label_dropout_prob=objective.class_dropout)
    try:
        out = loss(esc_network(Toy()), SimpleNamespace(num_classes=CLASSES), SIGMA_DATA * x1, {"y": y})
    finally:
        monkeypatch.setattr(torch, "rand", real_rand)
    assert not draws
    return out[0], out[1], solved


def our_jump(tg):
    """x_t + d u(x_t, t, d): the particles of our network's jump to the end."""
    return tg.x_t + path.expand_like(tg.d, tg.x_t) * Toy()(tg.x_t, tg.t, tg.d, tg.y)


@pytest.mark.parametrize("conditional", [True, False])
def test_one_group_loss_and_particles_equal_escs(esc, monkeypatch, conditional):
    objective, x1, x0, y, tg = our_batch(4, conditional, objective=IMM(num_classes=CLASSES, class_dropout=0.5))
    if conditional:  # both dropped and kept labels
        assert (tg.y == CLASSES).any() and (tg.y == y).any()
    loss_out, loss_ref, (z_tr, z_sr) = run_esc(esc, monkeypatch, objective, x1, x0, y, tg)
    torch.testing.assert_close(z_tr, SIGMA_DATA * our_jump(tg), **TOL)
    torch.testing.assert_close(z_sr, SIGMA_DATA * tg.v, **TOL)  # the target particles
    weighted, plain = objective.group_losses(Toy(), tg)
    torch.testing.assert_close(loss_out.mean(), weighted[0], **TOL)
    torch.testing.assert_close(loss_ref.mean(), plain[0], **TOL)
    loss, logs = objective.loss(Toy(), tg)
    torch.testing.assert_close(loss, weighted[0])
    torch.testing.assert_close(logs["loss"], plain[0])
    assert plain[0] > 1e-3  # a comparison of something


@pytest.mark.parametrize("conditional", [True, False])
def test_several_groups_escs_loss_mixes_the_groups_weights(esc, monkeypatch, conditional):
    objective, x1, x0, y, tg = our_batch(12, conditional, seed=3)
    m, groups = objective.group_size, 3
    loss_out, loss_ref, (z_tr, z_sr) = run_esc(esc, monkeypatch, objective, x1, x0, y, tg, seed=3)
    jump = our_jump(tg)
    torch.testing.assert_close(z_tr, SIGMA_DATA * jump, **TOL)
    torch.testing.assert_close(z_sr, SIGMA_DATA * tg.v, **TOL)
    a, b = jump.reshape(groups, m, -1), tg.v.reshape(groups, m, -1)
    widths, weights = kernel_width(tg.d[::m].double()), time_weight(tg.t[::m], 2.0, 4.0)
    # ESC's [G, G, m, m] loss: group g's kernel width and time weight applied to every group g'
    crossed = torch.stack([mmd2(a, b, widths[g].repeat(groups)) for g in range(groups)])
    assert loss_out.shape == (groups, groups, m, m)
    torch.testing.assert_close(loss_ref.mean(), crossed.mean(), **TOL)
    torch.testing.assert_close(loss_out.mean(), (weights[:, None] * crossed).mean(), **TOL)
    ours, plain = objective.group_losses(Toy(), tg)  # each group under its own times: not ESC's mean
    assert abs(ours.mean() - loss_out.mean()) > 1e-3 * ours.mean()
    for g in range(groups):  # a group alone through ESC's kernel loss is ours
        rows = slice(g * m, (g + 1) * m)
        t_esc, r_esc = 1 - tg.t[rows].double()[None], 1 - (tg.t[rows].double() + tg.d[rows].double())[None]
        one_out, one = esc.imm.IMMLoss().kernel_loss(z_tr[None, rows], z_sr[None, rows], t_esc, r_esc)
        torch.testing.assert_close(one.mean(), plain[g], **TOL)
        torch.testing.assert_close(one_out.mean(), ours[g], **TOL)


def test_time_sampling_equals_escs(esc, monkeypatch):
    """(t, r, s) of ESC's sample_time_steps on given uniforms: its t = 0.994 u, r = u' t; ours a = 1 - u, b = 1 - u'."""
    g = torch.Generator().manual_seed(5)
    u, u2 = torch.rand(4000, generator=g, dtype=torch.float64), torch.rand(4000, generator=g, dtype=torch.float64)
    u[:5] = torch.tensor([0.0, 1e-3, 0.02, 0.5, 1 - 1e-9], dtype=torch.float64)  # near data, near noise
    queue = [u, u2]
    monkeypatch.setattr(torch, "rand", lambda *size, **kw: queue.pop(0))
    r, s, t = esc.imm.IMMLoss().sample_time_steps(4000, "cpu")
    objective = IMM()
    ours_t, ours_d, ours_s = objective.group_times(1 - u, 1 - u2)
    torch.testing.assert_close(ours_t, 1 - t, atol=1e-12, rtol=0)
    torch.testing.assert_close(ours_t + ours_d, 1 - r, atol=1e-12, rtol=0)
    torch.testing.assert_close(ours_s, 1 - s, atol=1e-6, rtol=0)  # ESC takes n(T) in float32
    # ESC lets s pass the end r in about one group in nine; clip_intermediate keeps it at r
    passed = (s < r).double().mean()
    assert 0.08 < passed < 0.15, passed
    clipped = IMM(clip_intermediate=True).group_times(1 - u, 1 - u2)[2]
    torch.testing.assert_close(clipped, torch.minimum(1 - s, 1 - r), atol=1e-6, rtol=0)


@pytest.mark.parametrize("steps", [1, 2, 4])
@pytest.mark.parametrize("cfg_scale", [1.0, 1.5])
def test_sampling_equals_escs_sampler(esc, steps, cfg_scale):
    """ESC's cfg_sampler (equal steps from its t = 1 to 0, z_r = z_t + (r - t) u) is our Euler sampler.
    Guided, it runs one sample at a time (its scale factors are sized for the unguided batch)."""
    rows = 5 if cfg_scale == 1.0 else 1
    g = torch.Generator().manual_seed(11)
    noise = torch.randn(rows, *SHAPE, generator=g, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (rows,), generator=g)
    net = Toy()
    model = esc_network(net)
    model.num_classes = CLASSES
    scheduler = esc.scheduler.LinearFlowScheduler(sigma_data=SIGMA_DATA)
    theirs = esc.sampler.cfg_sampler(model, noise, y, cfg_scale=cfg_scale, num_steps=steps, scheduler=scheduler)
    ours = sample(net, noise, steps, y, cfg_scale, IMM().sampling_d_at(steps))
    torch.testing.assert_close(theirs, SIGMA_DATA * ours, **TOL)
