"""SoFlow against its authors' PyTorch code (zlab-princeton/SoFlow, ``models.py``: ``Soflow.get_velocity_loss`` and
``Soflow.get_consistency_loss``, combined as ``train.py`` does), number for number in float64.

The reference's own methods run unchanged on the same network, data, noise, times and labels:

- its network: ``Soflow.network`` is replaced by a thin adapter of ours (its DiT and U-Net files need timm
  and are stubbed for the import), NN(x, t, s, y) = -ours(x, 1 - t, t - s, y): the reference runs in
  reversed time (t = 1 noise, x_t = (1 - t) data + t noise, velocity noise - data), and its DiT embeds t and
  the gap t - s, our d. A missing label (its unconditional branch) is the null label.
- its noise: ``torch.randn_like`` hands out our noise; ``torch.cuda.get_rng_state``/``set_rng_state`` (which
  it calls to replay dropout in the second pass) are no-ops on the CPU.
- its times and labels: our targets' times mapped to its time (t = 1 - ours, s = t - d), its middle time
  from its own ``get_middle_time`` at our progress and the clamp of ``train.py``; its guidance mask is our
  label dropout.

Compared, with our path's eps set to 0 (the reference has none): the gradient of the loss with respect to
the network's output on every row (the reference's d/dNN against -d/du of ours: it holds the targets and
each row's weight), the gradient with respect to the network's weights, and the middle point the
reference's second pass runs at against ours. The loss values differ by construction (the reference
trains its consistency rows through a surrogate with a scaled gradient; ours has that gradient).
"""

import importlib.util
import math
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from shortcut_models import path
from shortcut_models.objectives import Progress, SoFlow
from shortcut_models.objectives import soflow as soflow_module

SHAPE = (2, 4, 4)  # the reference views times as [B, 1, 1, 1]: images
B, CLASSES = 16, 5
SCHEDULES = {"exponential": "Exponent", "linear": "Linear", "cosine": "Cosine", "constant": "Const"}


def soflow_root() -> Path:
    """SHORTCUT_REFERENCE_CODE/../soflow, or a skip saying why."""
    root = os.environ.get("SHORTCUT_REFERENCE_CODE")
    if not root:
        pytest.skip("SHORTCUT_REFERENCE_CODE is unset: the SoFlow authors' code (its ../soflow) is needed here")
    folder = Path(root).resolve().parent / "soflow"
    if not (folder / "models.py").is_file():
        pytest.skip(f"{folder}/models.py is missing: the SoFlow authors' code (see ../shared/reference/README.md)")
    return folder


@pytest.fixture(scope="module")
def reference():
    """The authors' models.py, its ``unet`` and ``dit`` imports stubbed (they need timm; the network is ours)."""
    folder = soflow_root()
    stubs = {"unet": types.ModuleType("unet"), "dit": types.ModuleType("dit")}
    stubs["unet"].SongUNet = lambda **kwargs: nn.Identity()
    stubs["dit"].DiT = lambda **kwargs: nn.Identity()
    saved = {k: sys.modules[k] for k in stubs if k in sys.modules}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location("soflow_authors_models", folder / "models.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k in stubs:
            sys.modules.pop(k, None)
        sys.modules.update(saved)
    return module


class Net(nn.Module):
    """A small deterministic network, nonlinear in x, t, d and the label (ours: model(x_t, t, d, y)); it records
    the outputs of its calls made with gradient, so the loss's gradient on them can be read."""

    def __init__(self, classes: int, width: int = 24):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        dim = math.prod(SHAPE)
        self.inp = nn.Parameter(torch.randn(dim + 2, width, generator=g, dtype=torch.float64) / math.sqrt(dim))
        self.emb = nn.Parameter(torch.randn(classes + 1, width, generator=g, dtype=torch.float64))
        self.out = nn.Parameter(torch.randn(width, dim, generator=g, dtype=torch.float64) / math.sqrt(width))
        self.live: list[torch.Tensor] = []

    def forward(self, x, t, d, y):
        h = torch.cat([x.flatten(1), 3 * t.to(x.dtype)[:, None], 2 * d.to(x.dtype)[:, None]], 1)
        out = (torch.tanh(h @ self.inp + self.emb[y]) @ self.out).view_as(x) + 0.3 * x
        if torch.is_grad_enabled():
            out.retain_grad()
            self.live.append(out)
        return out


class Adapter(nn.Module):
    """The reference's view of ``net``: NN(x, t, s, y) = -net(x, 1 - t, t - s, y); y None is the null label. It
    records the inputs of the calls made without gradient (the middle point)."""

    def __init__(self, net: Net, null: int):
        super().__init__()
        self.net, self.null = net, null
        self.quiet: list[tuple[torch.Tensor, ...]] = []

    def forward(self, x, t, s, y=None, augment_labels=None):
        n = x.shape[0]
        t, s = t.reshape(n), s.reshape(n)
        y = torch.full((n,), self.null, dtype=torch.long) if y is None else y.reshape(n)
        if not torch.is_grad_enabled():
            self.quiet.append((x, t, s))
        return -self.net(x, 1 - t, t - s, y)


def draws(seed: int, conditional: bool):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(B, *SHAPE, generator=g, dtype=torch.float64)
    x0 = torch.randn(B, *SHAPE, generator=g, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (B,), generator=g) if conditional else None
    return x0, x1, y, torch.Generator().manual_seed(seed + 100)


def ours(objective: SoFlow, net: Net, values, progress: Progress):
    """Our targets and the gradients of our loss: (targets, d loss / d u on every row, weight gradients)."""
    x0, x1, y, gen = values
    targets = objective.targets(net, x1, y, gen, progress, x0=x0)
    net.zero_grad()
    net.live.clear()
    loss, _ = objective.loss(net, targets)
    loss.backward()
    (out,) = net.live
    return targets, out.grad.clone(), [p.grad.clone() for p in net.parameters()]


def theirs(module, objective: SoFlow, net: Net, values, targets, progress: Progress, monkeypatch):
    """The reference's loss on the same rows, as train.py combines its two parts: (d loss / d NN on every row,
    weight gradients, the middle points' inputs (x_l, l, s) of its second pass)."""
    x0, x1, y, _ = values
    nc = objective.kind_rows(B)[0]  # our consistency rows lead; the reference's flow rows do (its velocity part first)
    flow, pair = slice(nc, B), slice(0, nc)
    null = objective.num_classes
    model = module.Soflow(data_channels=SHAPE[0], data_size=SHAPE[1], num_classes=null, model_type="DiT-B-4")
    adapter = Adapter(net, null)
    model.network = adapter
    dropped = targets.y == null if y is not None else torch.zeros(B, dtype=torch.bool)
    noise = [x0[flow], x0[pair]]
    monkeypatch.setattr(torch, "randn_like", lambda like, **kw: noise.pop(0).clone())
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda *a, **k: None)
    t_ref = 1 - targets.t.double()
    s_ref = t_ref - targets.d.double()
    common = {
        "cfg_scale": objective.cfg_scale,
        "cfg_decay_time": 1 - objective.cfg_decay_below,
        "p": objective.recipe.adaptive_power,
        "eps": objective.recipe.adaptive_eps,
        "mix_ratio": objective.mix_ratio,
        "augment_labels": None,
    }
    labels = (lambda rows: None) if y is None else (lambda rows: y[rows])
    net.zero_grad()
    net.live.clear()
    t = t_ref[flow].view(-1, 1, 1, 1)
    velocity_loss, *_ = model(
        get_velocity_loss=True, samples=x1[flow], t=t, labels=labels(flow), cfg_mask=dropped[flow], **common
    )
    t, s = t_ref[pair].view(-1, 1, 1, 1), s_ref[pair].view(-1, 1, 1, 1)
    step, total = progress.step, progress.total
    method = SCHEDULES[objective.ratio_schedule]
    l = model.get_middle_time(t, s, step, total, objective.ratio_start, objective.ratio_end, method)  # noqa: E741
    l = torch.min(l, t - 1e-4)  # noqa: E741 - train.py's clamp
    consistency_loss, *_ = model(
        get_velocity_loss=False,
        samples=x1[pair],
        t=t,
        l=l,
        s=s,
        labels=labels(pair),
        cfg_mask=dropped[pair],
        **common,
    )
    assert not noise  # both noise draws were taken
    loss = velocity_loss * ((B - nc) / B) + consistency_loss * (nc / B)
    loss.backward()
    flow_out, pair_out = net.live  # the calls with gradient: flow rows, then consistency rows
    out_grad = torch.cat([pair_out.grad, flow_out.grad])  # in our row order
    return out_grad, [p.grad.clone() for p in net.parameters()], adapter.quiet[-1]


def compare(module, objective: SoFlow, values, progress: Progress, monkeypatch) -> dict[str, float]:
    """The largest differences, relative to the size of the reference's gradients."""
    net = Net(max(objective.num_classes, 1))
    targets, out_grad, grads = ours(objective, net, values, progress)
    with monkeypatch.context() as m:
        ref_out, ref_grads, (x_l, middle, s) = theirs(module, objective, net, values, targets, progress, m)
    nc = objective.kind_rows(B)[0]
    r = soflow_module.ratio_at(objective.ratio_schedule, objective.ratio_start, objective.ratio_end, progress)
    t, d = targets.t[:nc].double(), targets.d[:nc].double()
    gap = torch.clamp(d * r, min=1e-4)
    scale = ref_out.abs().max()
    return {
        # both are the gradients on the output of our network (the reference's NN is minus it)
        "output gradient": float((out_grad - ref_out).abs().max() / scale),
        "weight gradient": max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(grads, ref_grads)),
        "middle time": float((1 - middle - (t + gap)).abs().max()),
        "end time": float((1 - s - (t + d)).abs().max()),
        "middle point": float((x_l - (x_l_ours(objective, net, targets, values, gap))).abs().max()),
    }


def x_l_ours(objective: SoFlow, net, targets, values, gap):
    """Our middle point x_t + gap V of the consistency rows, V the (mixed) guided velocity our objective builds."""
    x0, x1, y, _ = values
    nc = objective.kind_rows(B)[0]
    v = path.velocity(x0, x1)
    velocity = v
    if objective.guided and y is not None:
        kept = targets.y != objective.num_classes
        with torch.no_grad():
            velocity, _ = objective.guided_velocities(net, targets.x_t, targets.t, v, targets.y, kept, nc)
    return targets.x_t[:nc] + path.expand_like(gap, v) * velocity[:nc]


@pytest.fixture
def no_path_eps(monkeypatch):
    """The reference's path has no eps: ours for the comparison too."""
    monkeypatch.setattr(path, "EPS", 0.0)


CASES = {
    "defaults, conditional": ({}, True, Progress(3, 10)),
    "defaults, first step": ({}, True, Progress(0, 10)),
    "no mixing (mix 1)": ({"mix_ratio": 1.0}, True, Progress(5, 10)),
    "no guidance decay, p 0.75, eps 1e-3": (
        {"cfg_decay_below": 0.0, "adaptive_power": 0.75, "adaptive_eps": 1e-3},
        True,
        Progress(2, 10),
    ),
    "tiny middle share (clamped gaps), linear": (
        {"ratio_schedule": "linear", "ratio_start": 0.001, "ratio_end": 0.0001},
        True,
        Progress(7, 10),
    ),
    "cosine schedule": ({"ratio_schedule": "cosine"}, True, Progress(4, 10)),
    "unguided conditional (cfg 1, no dropout)": ({"cfg_scale": 1.0, "class_dropout": 0.0}, True, Progress(1, 4)),
    "unconditional": ({}, False, Progress(6, 9)),
    "no adaptive weight (p 0)": ({"adaptive_power": 0.0}, True, Progress(3, 10)),
}


@pytest.mark.usefixtures("no_path_eps")
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_and_middle_points_equal_the_authors_code(reference, monkeypatch, case, seed):
    knobs, conditional, progress = CASES[case]
    objective = SoFlow.from_knobs(num_classes=CLASSES if conditional else 0, **knobs)
    values = draws(seed, conditional)
    diff = compare(reference, objective, values, progress, monkeypatch)
    assert max(diff.values()) < 1e-10, diff


def test_the_cases_cover_dropped_labels_and_clamped_gaps():
    """The draws above hold rows whose label is dropped among both kinds (seeds 0 and 1), and rows whose middle
    gap is clamped to 1e-4 beside rows where it is not (the clamped case), so the comparison covers those branches."""
    nc = SoFlow().kind_rows(B)[0]
    dropped = []
    for seed in (0, 1):
        x0, x1, y, gen = draws(seed, True)
        dropped.append(
            SoFlow(num_classes=CLASSES).targets(Net(CLASSES), x1, y, gen, Progress(3, 10), x0=x0).y == CLASSES
        )
    dropped = torch.stack(dropped)
    assert dropped[:, :nc].any() and dropped[:, nc:].any()
    knobs, _, progress = CASES["tiny middle share (clamped gaps), linear"]
    x0, x1, y, gen = draws(0, True)
    targets = SoFlow.from_knobs(num_classes=CLASSES, **knobs).targets(Net(CLASSES), x1, y, gen, progress, x0=x0)
    r = soflow_module.ratio_at("linear", knobs["ratio_start"], knobs["ratio_end"], progress)
    assert (targets.d[:nc] * r < 1e-4).any() and (targets.d[:nc] * r > 1e-4).any()


CHANGED = {
    "mix ratio 0.5": {"mix_ratio": 0.5},
    "guidance scale 2": {"cfg_scale": 2.0},
    "guidance decay below 0.3": {"cfg_decay_below": 0.3},
    "middle share from 0.2": {"ratio_start": 0.2},
    "adaptive eps 0.02": {"adaptive_eps": 0.02},
    "plain squared error": {"loss_weight": "mse"},
}


@pytest.mark.usefixtures("no_path_eps")
@pytest.mark.parametrize("change", list(CHANGED))
def test_the_comparison_fails_when_a_component_is_changed(reference, monkeypatch, change):
    """The test has teeth: ours with one knob changed, the reference at the authors' values, differ by far more
    than the tolerance."""
    objective = SoFlow.from_knobs(num_classes=CLASSES, **CHANGED[change])
    authors = SoFlow(num_classes=CLASSES)
    values = draws(0, True)
    progress = Progress(3, 10)
    net = Net(CLASSES)
    targets, out_grad, _ = ours(objective, net, values, progress)
    with monkeypatch.context() as m:
        ref_out, _, _ = theirs(reference, authors, net, values, targets, progress, m)
    assert float((out_grad - ref_out).abs().max() / ref_out.abs().max()) > 1e-3


@pytest.mark.usefixtures("no_path_eps")
def test_the_comparison_fails_when_the_consistency_target_is_changed(reference, monkeypatch):
    """The consistency target replaced by the guided velocity alone (no network at the middle point): the
    gradients move far past the tolerance."""
    objective = SoFlow(num_classes=CLASSES)
    values, progress = draws(1, True), Progress(3, 10)
    with monkeypatch.context() as m:
        m.setattr(
            SoFlow, "consistency_target", lambda self, net, x, t, d, velocity, y, p: (velocity, 1.0 / (0 * t + 0.1))
        )
        net = Net(CLASSES)
        targets, out_grad, _ = ours(objective, net, values, progress)
    with monkeypatch.context() as m:
        ref_out, _, _ = theirs(reference, objective, net, values, targets, progress, m)
    nc = objective.kind_rows(B)[0]
    assert float((out_grad - ref_out)[nc:].abs().max()) < 1e-10 * float(ref_out.abs().max())  # flow rows agree
    assert float((out_grad - ref_out)[:nc].abs().max() / ref_out.abs().max()) > 1e-3


def test_our_defaults_are_the_authors_imagenet_configuration():
    """imagenet.yaml (the class-conditional ImageNet setting of the paper's table), read as text, against our
    defaults mapped to our time (t -> 1 - t)."""
    text = (soflow_root() / "imagenet.yaml").read_text()
    config = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if ":" in line:
            key, value = (s.strip() for s in line.split(":", 1))
            config[key] = value
    mine = SoFlow(num_classes=CLASSES)
    assert (config["noising_type"], config["coefficient_type"]) == ("Linear", "Euler")  # straight path, x + d u
    assert float(config["velocity_loss_ratio"]) == mine.flow_share
    assert (float(config["p"]), float(config["eps"])) == (mine.recipe.adaptive_power, mine.recipe.adaptive_eps)
    means = [float(v) for v in config["time_mean"].strip("[]").split(",")]
    stds = [float(v) for v in config["time_std"].strip("[]").split(",")]
    assert (-means[0], stds[0]) == (mine.recipe.time_mu, mine.recipe.time_sigma)  # flow rows
    assert (-means[1], stds[1]) == (mine.end_mu, mine.end_sigma)  # the end (their s, nearer the data)
    assert (-means[2], stds[2]) == (mine.start_mu, mine.start_sigma)  # the start (their t)
    assert float(config["cfg_scale"]) == mine.cfg_scale and float(config["mix_ratio"]) == mine.mix_ratio
    assert float(config["cfg_drop_rate"]) == mine.class_dropout
    assert math.isclose(1 - float(config["cfg_decay_time"]), mine.cfg_decay_below)
    assert config["l_schedule"] == SCHEDULES[mine.ratio_schedule]
    assert (float(config["l_init_ratio"]), float(config["l_end_ratio"])) == (mine.ratio_start, mine.ratio_end)
