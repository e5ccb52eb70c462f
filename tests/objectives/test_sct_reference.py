"""sCT against ESC's port (explicit-shortcut/loss/scm_linear_loss.py, SCMLinearLoss), number for number.

ESC's time runs the other way (tau = 1 noise, z = (1 - tau) x + tau n, velocity n - x) and its network is
u(z, r, tau), the average velocity over [r, tau] stepped as z_r = z_tau - (tau - r) u. A thin view maps
ours onto it: u_esc(z, r, tau) = -u(z, 1 - tau, tau - r). Both sides see the same noise, times, label
dropout and two deterministic DiT-Nano networks in float64 (the student and the target network) whose
time inputs are rounded to float32, as our samplers draw times; the path's eps is set to 0 here, as
ESC's path has none. The reference's forward-mode product runs with the math attention kernel, as ours.

How the reference's random draws are driven: the whole ``SCMLinearLoss.__call__`` runs, with the name
``torch`` inside its module replaced by a proxy whose ``randn``, ``rand`` and ``randn_like`` hand out
scripted tensors in the order the reference draws them: (1) the label-dropout uniforms = our uniforms;
(2) its two logit-normal draws per row = the normals from which its sigmoid gives tau = 1 - t of our two
draws (:func:`esc_normal`; :func:`test_the_time_sampler_equals_escs` checks that its sampler fed minus
our normals gives the same times); (3) its "r equals t" mask = our row layout (the leading rows are our
consistency rows, r = 0); (4) its noise = our x0. The proxy checks the shapes and that every scripted
draw was taken.
"""

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from shortcut_models import path
from shortcut_models.models import build_model
from shortcut_models.objectives import Progress, TargetNetworks, build_objective
from shortcut_models.sampling import sample

B, CLASSES, WARMUP = 16, 10, 10000


class Float32Times(nn.Module):
    """A network whose time and step-size inputs are rounded to float32 (where our samplers draw times)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t, d, y):
        return self.net(x, t.float(), d.float(), y)


def dit(num_classes, seed):
    """A DiT-Nano in float64 whose zero-initialised output layers are perturbed (a non-trivial function)."""
    torch.manual_seed(seed)
    net = build_model("DiT-Nano", (1, 8, 8), num_classes, {}).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return Float32Times(net)


def esc_normal(ours, n):
    """The normal draw from which ESC's logit-normal sampler (float64) makes tau = 1 - t, t our sampler's
    time (float32) from the normal draw ``n``."""
    t = torch.sigmoid(
        ours.recipe.time_mu + ours.recipe.time_sigma * n.double()
    ).float()  # as time_samplers.logit_normal
    tau = 1 - t.double()
    return (torch.logit(tau) + ours.recipe.time_mu) / ours.recipe.time_sigma


class EscView(nn.Module):
    """Our network as ESC calls it: u_esc(z, r, tau, y) = -u(z, 1 - tau, tau - r, y); records the labels."""

    def __init__(self, net, num_classes):
        super().__init__()
        self.net, self.num_classes, self.labels = net, num_classes, []

    def forward(self, z, r, tau, y=None, **_):
        if y is None:
            y = torch.full((z.shape[0],), self.num_classes, dtype=torch.long)
        self.labels.append(y)
        return -self.net(z, 1 - tau, tau - r, y)


class ScriptedTorch:
    """``torch`` for the reference's module, its random draws replaced by given tensors, in order."""

    def __init__(self, **draws):
        self.draws = {name: list(values) for name, values in draws.items()}

    def __getattr__(self, name):
        if name not in self.draws:
            return getattr(torch, name)

        def draw(*args, **kwargs):
            value = self.draws[name].pop(0)
            shape = tuple(args[0].shape) if name == "randn_like" else tuple(a for a in args if isinstance(a, int))
            assert shape == tuple(value.shape), (name, shape, value.shape)
            return value.clone()

        return draw

    def all_taken(self):
        return all(not values for values in self.draws.values())


@pytest.fixture
def no_path_eps(monkeypatch):
    monkeypatch.setattr(path, "EPS", 0.0)


def run_both(esc_code, monkeypatch, conditional, step, cfg_rows, seed=0):
    """(our targets, our loss and logs, the reference's target / z / r / tau / loss / mean / labels, and v)."""
    module = esc_code("loss.scm_linear_loss")
    classes = CLASSES if conditional else 0
    dropout = 0.3 if conditional else 0.0
    target_net, student = dit(classes, 1), dit(classes, 2)
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(B, 1, 8, 8, generator=g, dtype=torch.float64)
    x0 = torch.randn(B, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (B,), generator=g) if conditional else None

    ours = build_objective("sct", classes, {"class_dropout": dropout, "derivative_warmup_steps": WARMUP})
    tg = ours.targets(
        TargetNetworks(online=target_net), x1, y, torch.Generator().manual_seed(seed + 1), Progress(step, 30000), x0=x0
    )
    loss, logs = ours.loss(student, tg)

    mirror = torch.Generator().manual_seed(seed + 1)  # our draws after the noise, made again
    n_a, n_c = torch.randn(B, generator=mirror), torch.randn(B, generator=mirror)
    uniforms = [torch.rand(B, generator=mirror).double()] if conditional else []
    r_equals_t = (tg.kind == 0).double()  # below 1 - ratio (0.75) exactly on our flow rows: r = t there
    scripted = ScriptedTorch(
        randn=[torch.stack([esc_normal(ours, n_a), esc_normal(ours, n_c)], dim=1)],
        rand=[*uniforms, r_equals_t],
        randn_like=[x0],
    )
    monkeypatch.setattr(module, "torch", scripted)
    cfg = {"cfg_min_t": 1.0, "cfg_max_t": 0.0, "cfg_kappa": 0.5} if not cfg_rows else {}  # ESC's sCT run / defaults
    ref = module.SCMLinearLoss(
        time_mu=-ours.recipe.time_mu,
        time_sigma=ours.recipe.time_sigma,
        ratio_r_not_equal_t=ours.interval_share,
        label_dropout_prob=dropout,
        grad_warmup_steps=WARMUP,
        variational_adaptive_weight=False,  # a learned log-variance head: not in our networks
        loss_type="l2",
        **cfg,
    )
    seen = {}
    real_target = ref._tgt_u

    def spy(model_tgt, z_t, v_t, r, s, t, unconditional_mask, **kwargs):
        seen.update(z_t=z_t, r=r, tau=t)
        seen["target"] = real_target(model_tgt, z_t, v_t, r, s, t, unconditional_mask, **kwargs)
        return seen["target"]

    ref._tgt_u = spy
    esc_student = EscView(student, classes)
    with sdpa_kernel([SDPBackend.MATH]):  # forward-mode AD has no rule for the fused CPU attention kernel
        ref_loss, ref_mean = ref(esc_student, EscView(target_net, classes), x1, {"y": y, "global_step": step})
    assert scripted.all_taken()
    seen.update(loss=ref_loss.mean(), mean=ref_mean, labels=esc_student.labels[0], v=path.velocity(x0, x1))
    return tg, loss, logs, seen


@pytest.mark.parametrize("conditional", [True, False], ids=["conditional", "unconditional"])
@pytest.mark.parametrize("step", [2500, 20000], ids=["warming-up", "warm"])
@pytest.mark.parametrize("cfg_rows", [False, True], ids=["esc-run", "class-defaults"])
def test_targets_and_loss_equal_escs(esc_code, monkeypatch, no_path_eps, conditional, step, cfg_rows):
    """ESC's sCT run (CFG off) and its class defaults (CFG rows with omega = 1, kappa = 0: the same target
    by its other code path), while the tangent warms up (step 2500 of 10000) and after."""
    tg, loss, logs, ref = run_both(esc_code, monkeypatch, conditional, step, cfg_rows)
    tau = 1 - tg.t.double()
    torch.testing.assert_close(ref["tau"], tau, atol=1e-12, rtol=0)
    torch.testing.assert_close(ref["tau"] - ref["r"], tg.d.double(), atol=1e-7, rtol=0)  # our d = 1 - t in float32
    assert torch.equal(ref["labels"], tg.y)
    torch.testing.assert_close(ref["z_t"], tg.x_t, atol=1e-12, rtol=0)
    torch.testing.assert_close(-ref["target"], tg.v, atol=1e-5, rtol=0)
    torch.testing.assert_close(ref["loss"], loss.double(), atol=0, rtol=1e-5)  # our loss is summed in float32
    torch.testing.assert_close(ref["mean"], logs["loss"].double(), atol=0, rtol=1e-5)
    # the comparison has teeth: the derivative term moves the consistency rows' targets, not the flow rows'
    jump = tg.kind == 0
    v = ref["v"]
    assert (tg.v[jump] - v[jump]).abs().max() > 1e-2 and torch.equal(tg.v[~jump], v[~jump])
    if conditional:
        assert (tg.y == CLASSES).any() and (tg.y < CLASSES).any()  # some labels dropped, some kept


def test_the_time_sampler_equals_escs(esc_code, monkeypatch):
    """ESC's sampler fed minus our two normal draws per row gives tau = 1 - our t (its mu is minus ours and
    it keeps the noisier of two draws, we the earlier), and r = 0 exactly on our consistency rows."""
    module = esc_code("loss.scm_linear_loss")
    ours, rows = build_objective("sct", 0), 4096
    x = torch.zeros(rows, 1)
    tg = ours.targets(lambda x, t, d, y: x, x, None, torch.Generator().manual_seed(7), x0=x)
    mirror = torch.Generator().manual_seed(7)
    normals = torch.stack([torch.randn(rows, generator=mirror), torch.randn(rows, generator=mirror)], dim=1)
    scripted = ScriptedTorch(randn=[-normals.double()], rand=[(tg.kind == 0).double()])
    monkeypatch.setattr(module, "torch", scripted)
    ref = module.SCMLinearLoss(
        time_mu=-ours.recipe.time_mu, time_sigma=ours.recipe.time_sigma, ratio_r_not_equal_t=ours.interval_share
    )
    r, s, tau = ref.sample_time_steps(rows, "cpu")
    assert scripted.all_taken() and torch.equal(s, tau)
    torch.testing.assert_close(tau, 1 - tg.t.double(), atol=1e-6, rtol=0)  # float32 against float64 sigmoid
    assert torch.equal(r == 0, tg.kind == 0) and torch.equal(r[tg.kind == 1], tau[tg.kind == 1])
    assert (tg.kind == 0).sum() == rows // 4  # ESC's run: 25% of the rows with r != t


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_sampling_equals_escs_sampler(esc_code, steps):
    """ESC's cfg_sampler with the linear scheduler (N equal steps z_r = z_tau - (tau - r) u) is our sampler
    with the step actually taken as the step-size input. Unguided: with cfg_scale > 1 ESC's sampler
    multiplies the doubled batch by c_in of the single one (a shape error)."""
    sampler = esc_code("sampler")
    scheduler = esc_code("utils.scheduler").LinearFlowScheduler()
    net = dit(CLASSES, 3).float()
    net.num_classes = CLASSES
    noise = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    y = torch.arange(6) % CLASSES
    obj = build_objective("sct", CLASSES)
    ours = sample(net, noise, steps, y, fixed_d=obj.sampling_d_at(steps))
    theirs = sampler.cfg_sampler(EscView(net, CLASSES), noise, y, 1.0, steps, scheduler)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
