"""The recipe parts every objective shares: time samplers, loss weights, the target network and its clamp
(closed forms for fixed draws), and every objective training with every part."""

import math

import pytest
import torch
from torch import nn

from shortcut_models.cli import main
from shortcut_models.config import build_config
from shortcut_models.inference import load_model
from shortcut_models.objectives import (
    LOSS_WEIGHTS,
    OBJECTIVES,
    TARGET_NETWORKS,
    TIME_SAMPLERS,
    FlowMatching,
    MeanFlow,
    Progress,
    Recipe,
    Shortcut,
    TargetNetworks,
    Targets,
    build_objective,
)
from shortcut_models.objectives.time_samplers import interval_times, start_times, times
from shortcut_models.seeding import RowDraws, RowShare
from shortcut_models.training import Trainer

WITH_TARGET_NETWORK = [name for name, cls in OBJECTIVES.items() if cls.recipe.target_network is not None]


def draws(n=4096, seed=0):
    return RowDraws.for_batch(n, torch.Generator().manual_seed(seed), torch.device("cpu"))


# ----------------------------------------------------------------------------- time samplers
def test_each_sampler_is_its_closed_form_on_the_same_draws():
    knobs = Recipe(time_mu=-0.3, time_sigma=1.7)
    g = torch.Generator().manual_seed(0)
    grid = times(Recipe(), draws(), 128)
    torch.testing.assert_close(grid, torch.randint(0, 128, (4096,), generator=g).float() / 128, atol=0, rtol=0)
    g = torch.Generator().manual_seed(0)
    uniform = times(Recipe(time_sampler="uniform"), draws(), 128)
    torch.testing.assert_close(uniform, torch.rand(4096, generator=g), atol=0, rtol=0)
    g = torch.Generator().manual_seed(0)
    logit = times(Recipe(time_sampler="logit-normal", time_mu=-0.3, time_sigma=1.7), draws(), 128)
    expected = torch.sigmoid(knobs.time_mu + knobs.time_sigma * torch.randn(4096, generator=g).double()).float()
    torch.testing.assert_close(logit, expected, atol=0, rtol=0)
    assert abs(logit.median().item() - 1 / (1 + math.exp(0.3))) < 0.02  # median sigmoid(mu)


def test_the_logit_normal_time_of_a_row_does_not_depend_on_the_rows_beside_it():
    """A process holding a few rows of a batch gets the times a single process gets for them, bit for bit
    (the vectorised float32 sigmoid of the CPU rounds a tensor's tail elements differently).

    Why bit for bit on any machine: both take the same float32 normals (the whole batch's, drawn in one
    call) and apply the same elementwise float64 operations; the vectorised and scalar float64 sigmoids
    agree to about an ulp, and the rounding to float32 hides that unless a value lies within ~1e-16 of a
    float32 rounding boundary (odds of order 1e-9 per row)."""
    knobs = Recipe(time_sampler="logit-normal", time_mu=1.0, time_sigma=1.4)
    whole = times(knobs, draws(4096), 128)
    for rows in (1, 3, 5, 7, 8, 9, 15, 16, 17):
        for start in range(0, 4096 - rows, 97):
            share = RowShare(4096, torch.arange(start, start + rows))
            local = times(knobs, RowDraws(share, torch.Generator().manual_seed(0), torch.device("cpu")), 128)
            assert torch.equal(local, whole[start : start + rows]), (rows, start)


@pytest.mark.parametrize("sampler", sorted(TIME_SAMPLERS))
def test_rows_that_step_stay_on_the_path(sampler):
    knobs = Recipe(time_sampler=sampler)
    for d in (1.0, 0.25, 1 / 128):
        t = start_times(knobs, draws(), d)
        assert (t >= 0).all() and (t + d <= 1).all()
        assert (t.unique().numel() > 1) == (d < 1)  # one step of d = 1 starts at 0
    d = 2.0 ** -torch.randint(0, 8, (4096,), generator=torch.Generator().manual_seed(1)).float()  # one per row
    t = start_times(knobs, draws(), d)
    assert (t >= 0).all() and (t + d <= 1).all()
    on_grid = torch.equal(torch.round(t / d) * d, t)
    assert on_grid == (sampler == "grid")


def test_the_grid_sampler_covers_each_rows_grid_evenly():
    d = torch.full((8192,), 0.25)
    t = start_times(Recipe(), draws(8192), d)
    counts = torch.bincount((t * 4).long(), minlength=4).float() / 8192
    assert set(t.unique().tolist()) == {0.0, 0.25, 0.5, 0.75} and (counts - 0.25).abs().max() < 0.03


@pytest.mark.parametrize("sampler", sorted(TIME_SAMPLERS))
def test_the_pair_sampler_sorts_two_draws(sampler):
    knobs = Recipe(time_sampler=sampler)
    t, d, interval = interval_times(knobs, draws(), 1000, 128)
    g = draws()
    a, c = times(knobs, g, 128), times(knobs, g, 128)  # the same two draws
    torch.testing.assert_close(t[:1000], torch.minimum(a, c)[:1000], atol=0, rtol=0)
    torch.testing.assert_close(d[:1000], (a - c).abs()[:1000], atol=0, rtol=0)
    assert interval[:1000].all() and not interval[1000:].any() and (d[1000:] == 0).all()
    assert torch.equal(t[1000:], torch.minimum(a, c)[1000:]) and (t + d <= 1).all()  # d = 0 at the smaller draw
    first, _, _ = interval_times(knobs, draws(), 1000, 128, flow_time="first")  # before: at the first draw
    assert torch.equal(first[:1000], t[:1000]) and torch.equal(first[1000:], a[1000:])


# ----------------------------------------------------------------------------- loss weights
class Shift(nn.Module):
    """pred = x + b: a model whose error per row is known."""

    def __init__(self, b):
        super().__init__()
        self.b = nn.Parameter(torch.tensor(float(b)))

    def forward(self, x, t, d, y):
        return x + self.b


def batch_targets(rows=6, dim=5):
    g = torch.Generator().manual_seed(3)
    x, v = torch.randn(rows, dim, generator=g), torch.randn(rows, dim, generator=g)
    zeros = torch.zeros(rows)
    return Targets(x, zeros, zeros, v, zeros.long(), torch.tensor([0, 0, 1, 1, 1, 1]))


@pytest.mark.parametrize("weight", sorted(LOSS_WEIGHTS))
def test_each_loss_weight_is_its_closed_form(weight):
    tg = batch_targets()
    model = Shift(0.3)
    objective = Shortcut.from_knobs(loss_weight=weight, adaptive_power=0.7, adaptive_eps=0.2, huber_c=0.1)
    loss, logs = objective.loss(model, tg)
    sq = (tg.x_t + 0.3 - tg.v).pow(2)
    s = sq.sum(dim=1)
    expected = {
        "mse": sq.mean(dim=1),
        "adaptive": s / (s + 0.2) ** 0.7,
        "pseudo-huber": torch.sqrt(s + (0.1 * math.sqrt(5)) ** 2) - 0.1 * math.sqrt(5),
    }[weight]
    torch.testing.assert_close(loss, expected.mean())
    # the logs are the plain mean squared error, overall and per kind of row, whatever the weight
    mse = sq.mean(dim=1)
    torch.testing.assert_close(logs["loss"], mse.mean())
    torch.testing.assert_close(logs["loss_self_consistency"], mse[:2].mean())
    torch.testing.assert_close(logs["loss_flow"], mse[2:].mean())


def test_the_adaptive_weight_is_a_constant_in_the_backward_pass():
    tg = batch_targets()
    model = Shift(0.3)
    FlowMatching.from_knobs(loss_weight="adaptive", adaptive_power=1.0, adaptive_eps=0.2).loss(model, tg)[0].backward()
    err = tg.x_t + 0.3 - tg.v
    s = err.pow(2).sum(dim=1)
    expected = ((2 * err.sum(dim=1)) / (s + 0.2)).mean()  # d/db of s / sg(s + eps)
    torch.testing.assert_close(model.b.grad, expected)


# ----------------------------------------------------------------------------- target network and clamp
class Recorder(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale, self.calls, self.num_classes = scale, 0, 0

    def forward(self, x, t, d, y, guidance=None):  # guidance: iMF feeds its scale as an input
        self.calls += 1
        return self.scale * torch.tanh(x) + t[:, None] - d[:, None]


@pytest.mark.parametrize("name", WITH_TARGET_NETWORK)
def test_the_target_network_knob_picks_the_network_that_builds_targets(name, make_batch):
    x1, x0, g = make_batch(64)
    for choice in TARGET_NETWORKS:
        online, ema, teacher = Recorder(1.0), Recorder(2.0), Recorder(3.0)
        objective = build_objective(name, 0, {"target_network": choice})
        step = 5 if name == "alpha-flow" else 0  # α-Flow calls no network at the start of its schedule (α = 1)
        objective.targets(TargetNetworks(online, ema, teacher), x1, None, g, Progress(step, 10), x0=x0)
        used = {"online": online.calls, "ema": ema.calls}
        assert (teacher.calls > 0) == OBJECTIVES[name].teacher_run  # the frozen teacher run, where there is one
        if name == "progressive-distillation":  # the stage's teacher builds every target; at a new stage
            assert used == {"online": 0, "ema": 0}  # it takes the weights of the network the knob names
            assert objective.teacher_refresh(Progress(2, 14)) == choice  # stage 1 of 7 starts at step 2
        else:
            assert used[choice] > 0 and used["ema" if choice == "online" else "online"] == 0, (name, choice)


@pytest.mark.parametrize("name", WITH_TARGET_NETWORK)
def test_the_target_clamp_bounds_every_target_the_network_builds(name, make_batch):
    x1, x0, _ = make_batch(64)
    net = Recorder(40.0)  # far outside [-0.5, 0.5]
    free, clamped = (
        build_objective(name, 0, {"target_clamp": c}).targets(net, x1, None, torch.Generator().manual_seed(1), x0=x0)
        for c in (0.0, 0.5)
    )
    built = clamped.kind == 0  # the rows the network builds (the first kind of every such objective)
    assert (free.v[built].abs() > 0.5).any() and (clamped.v[built].abs() <= 0.5).all()
    torch.testing.assert_close(clamped.v[built], free.v[built].clamp(-0.5, 0.5))
    torch.testing.assert_close(clamped.v[~built], free.v[~built])  # flow rows keep the path velocity


@pytest.mark.parametrize(
    "knobs,message",
    [
        ({"time_sampler": "beta"}, "time_sampler must be one of"),
        ({"loss_weight": "l1"}, "loss_weight must be one of"),
        ({"target_network": "teacher"}, "target_network must be one of"),
        ({"target_clamp": -1}, "target_clamp"),
        ({"huber_c": 0}, "huber_c"),
        ({"time_sigma": -1}, "time_sigma"),
    ],
)
def test_bad_recipe_values_are_refused(knobs, message):
    with pytest.raises(ValueError, match=message):
        build_objective("shortcut", 0, knobs)


def test_defaults_are_each_methods_own_recipe():
    for name, cls in OBJECTIVES.items():
        obj = cls()
        want = {
            "meanflow": ("logit-normal", "adaptive"),
            "esc": ("logit-normal", "adaptive"),
            "imm": ("uniform", "mse"),
            "imf": ("logit-normal", "adaptive"),
            "sct": ("logit-normal", "mse"),
            "decoupled-meanflow": ("logit-normal", "adaptive"),
            "soflow": ("logit-normal", "adaptive"),
            "alpha-flow": ("logit-normal", "adaptive"),
        }
        want = want.get(name, ("grid", "mse"))
        assert (obj.recipe.time_sampler, obj.recipe.loss_weight) == want, name
    network = {name: build_objective(name, 0).recipe.target_network for name in WITH_TARGET_NETWORK}
    assert network == {
        "shortcut": "ema",
        "consistency-training": "ema",
        "consistency-distillation": "ema",
        "progressive-distillation": "ema",
        "live-reflow": "online",
        "meanflow": "online",
        "esc": "online",
        "imm": "online",
        "imf": "online",
        "sct": "online",
        "decoupled-meanflow": "online",
        "soflow": "online",
        "alpha-flow": "online",
    }
    assert Shortcut().recipe.target_clamp == 4.0 and MeanFlow().recipe.target_clamp == 0.0
    assert "target_network" not in FlowMatching.knobs()  # no network builds flow matching's targets


# ----------------------------------------------------------------------------- every objective, every part
TOY = ["steps=2", "batch_size=16", "logger=none", "model_args.width=16", "model_args.depth=1", "sample_steps=[1]"]


@pytest.fixture(scope="module")
def flow_teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    Trainer(build_config("checkerboard", "flow", None, TOY), out, progress=False).run()
    return out


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_builds_targets_and_a_loss_with_every_recipe_part(name, make_batch):
    x1, x0, _ = make_batch(32, (2,))
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))

    def net(x, t, d, y, guidance=None):  # guidance: iMF feeds its scale as an input
        return model(x) + t[:, None] - d[:, None]

    for sampler in TIME_SAMPLERS:
        for weight in LOSS_WEIGHTS:
            objective = build_objective(name, 0, {"time_sampler": sampler, "loss_weight": weight})
            tg = objective.targets(net, x1, None, torch.Generator().manual_seed(0), Progress(3, 10), x0=x0)
            loss, logs = objective.loss(net, tg)
            model.zero_grad()
            loss.backward()
            assert math.isfinite(loss.item()) and all(p.grad is not None for p in model.parameters())
            assert (tg.t >= 0).all() and (tg.t < 1).all(), (name, sampler)
            assert set(logs) == {"loss", *(f"loss_{kind}" for kind in objective.row_kinds)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_trains_with_every_recipe_part(name, flow_teacher, tmp_path):
    """The cross product of time samplers and loss weights (and target networks where the objective
    has one) for two training steps each: finite losses, and the knobs recorded in the checkpoint."""
    choices = [(s, w, n) for s in TIME_SAMPLERS for w in LOSS_WEIGHTS for n in TARGET_NETWORKS]
    if name not in WITH_TARGET_NETWORK:
        choices = [(s, w, None) for s in TIME_SAMPLERS for w in LOSS_WEIGHTS]
    for i, (sampler, weight, network) in enumerate(choices):
        extra = [f"time_sampler={sampler}", f"loss_weight={weight}"]
        extra += [f"target_network={network}"] if network else []
        extra += [f"teacher={flow_teacher}"] if OBJECTIVES[name].teacher_run else []
        trainer = Trainer(build_config("checkerboard", name, None, [*TOY, *extra]), tmp_path / str(i), progress=False)
        logs = [trainer.train_step(step) for step in range(2)]
        assert all(math.isfinite(float(row["loss"])) for row in logs), (name, sampler, weight, network)
        args = trainer.spec.objective_args
        assert (args["time_sampler"], args["loss_weight"]) == (sampler, weight)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flow", "shortcut", "consistency-training", "live-reflow"])
def test_the_command_line_trains_and_samples_with_meanflows_recipe(name, nano_args, tmp_path):
    """`shortcut train --preset digits-uncond --objective NAME time_sampler=logit-normal loss_weight=adaptive`."""
    run = tmp_path / name
    recipe = ["time_sampler=logit-normal", "loss_weight=adaptive"]
    argv = ["train", "--preset", "digits-uncond", "--objective", name, "--out", str(run), "--quiet"]
    assert main([*argv, *nano_args, "steps=3", "eval_every=0", *recipe]) == 0
    assert main(["sample", "--ckpt", str(run), "--steps", "2", "--num", "4", "--out", str(tmp_path / "s.npz")]) == 0
    args = load_model(run, "cpu").objective.args()
    assert (args["time_sampler"], args["loss_weight"]) == ("logit-normal", "adaptive")


def test_a_new_part_is_one_function_and_one_registry_line(monkeypatch, tmp_path):
    """The worked examples of docs/architecture.md ("Recipe parts"): a time sampler and a loss weight."""
    from shortcut_models.objectives.time_samplers import TimeSampler

    def squared(draws, cells, knobs):
        return draws.uniform() ** 2

    def l1(sq, knobs):
        return sq.sqrt().mean(dim=1)

    monkeypatch.setitem(TIME_SAMPLERS, "squared", TimeSampler(squared))
    monkeypatch.setitem(LOSS_WEIGHTS, "l1", l1)
    cfg = build_config("checkerboard", "flow", None, [*TOY, "time_sampler=squared", "loss_weight=l1"])
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert (trainer.objective.recipe.time_sampler, trainer.objective.recipe.loss_weight) == ("squared", "l1")
    x1 = torch.randn(64, 2)
    tg = trainer.objective.targets(None, x1, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    torch.randn(64, 2, generator=g)  # the noise is drawn first
    torch.testing.assert_close(tg.t, torch.rand(64, generator=g) ** 2)
    trainer.run()
