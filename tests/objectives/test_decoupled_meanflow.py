"""Decoupled MeanFlow: its targets are the paper's equations (the official loss's, written in its own reversed time)
for fixed noise and a closed-form network; its times follow the official proposal; a flow-matching run loaded by
``init_from`` (ours on digits, and the authors' converted DiT) gives the source's velocity when both times are
equal, before any fine-tuning step; the run then trains and samples in one step; its cost model.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from shortcut_models import checkpoints as ckpt
from shortcut_models import path
from shortcut_models.cli import main
from shortcut_models.config import TrainConfig, build_config
from shortcut_models.convert import AuthorsArchitecture, authors_parameter_shapes, convert_jax_checkpoint, nest
from shortcut_models.errors import UserError
from shortcut_models.inference import load_model
from shortcut_models.models import build_network
from shortcut_models.objectives import DecoupledMeanFlow, build_objective
from shortcut_models.sampling import sample
from shortcut_models.training import Trainer

CLASSES = 4
G_MIN, G_MAX = 0.0, 0.7  # the official script's guidance interval, in its time (t = 1 noise)


class PaperField(nn.Module):
    """A network written in the paper's variables: time T (1 noise, 0 data), end R <= T, velocity noise - data,
    U(z, T, R, y) = tanh(A z) (1 + T) + R^2 + 0.1 y. Ours is u(x, t, d, y) = -U(x, 1 - t, 1 - t - d, y)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.a = torch.randn(3, 3, generator=g, dtype=torch.float64)
        self.num_classes = CLASSES

    def u_paper(self, z, big_t, big_r, y):
        return torch.tanh(z @ self.a.T) * (1 + big_t[:, None]) + big_r[:, None] ** 2 + 0.1 * y[:, None].double()

    def du_paper(self, z, big_t, dz):
        """dU along (dz, dT = 1, dR = 0), the official code's tangent (v, 1, 0) on (z, t, r)."""
        s = torch.tanh(z @ self.a.T)
        return (1 - s**2) * (dz @ self.a.T) * (1 + big_t[:, None]) + s

    def forward(self, x, t, d, y):
        t, d = t.double(), d.double()  # the times as given, the arithmetic in float64
        return -self.u_paper(x, 1 - t, 1 - t - d, y)


def paper_targets(field: PaperField, x0, x1, tg, omega: float) -> torch.Tensor:
    """The official targets (loss.py: compute_guidance with g_type "mg", then u_tgt = v_tgt + (r - t) du/dt on the
    MeanFlow rows, v_tgt on the flow-matching rows) at the drawn times and labels, in our sign and time."""
    big_t, big_r = 1 - tg.t.double(), 1 - tg.t.double() - tg.d.double()
    z = tg.x_t
    torch.testing.assert_close(z, (1 - big_t[:, None]) * x1 + big_t[:, None] * x0, atol=1e-4, rtol=0)  # eps = 1e-5
    v = -path.velocity(x0, x1)  # noise - data (up to the path's eps)
    null = torch.full_like(tg.y, CLASSES)
    kept = tg.y != CLASSES
    guided = kept & (big_t >= G_MIN) & (big_t <= G_MAX)
    v_cond, v_uncond = field.u_paper(z, big_t, big_t, tg.y), field.u_paper(z, big_t, big_t, null)
    v_tgt = torch.where(guided[:, None], v + omega * (v_cond - v_uncond), v)
    u_tgt = v_tgt + (big_r - big_t)[:, None] * field.du_paper(z, big_t, v_tgt)
    return -torch.where((tg.kind == 0)[:, None], u_tgt, v_tgt)


@pytest.mark.parametrize("omega", [0.6, 0.0])
def test_targets_are_the_papers_equations_for_fixed_noise(omega):
    g = torch.Generator().manual_seed(0)
    x1, x0 = torch.randn(64, 3, generator=g, dtype=torch.float64), torch.randn(64, 3, generator=g, dtype=torch.float64)
    y = torch.arange(64) % CLASSES
    field = PaperField()
    objective = DecoupledMeanFlow(num_classes=CLASSES, guidance_omega=omega)
    tg = objective.targets(field, x1, y, torch.Generator().manual_seed(1), x0=x0)
    assert objective.kind_rows(64) == (32, 32) and tg.kind.tolist() == [0] * 32 + [1] * 32
    assert (tg.d[:32] > 0).all() and (tg.d[32:] == 0).all() and (tg.t + tg.d <= 1).all()
    dropped = tg.y == CLASSES
    assert dropped.any() and not dropped.all()  # label dropout ran: the test sees kept and dropped rows
    guided = ~dropped & (tg.t >= 1 - G_MAX)
    assert guided.any() and (~guided).any()
    torch.testing.assert_close(tg.v, paper_targets(field, x0, x1, tg, omega), rtol=1e-10, atol=1e-10)
    # the derivative term and the guidance each move the target
    plain = -path.velocity(x0, x1)
    assert (tg.v[:32] + plain[:32]).abs().max() > 1e-2
    if omega:
        assert (tg.v[32:][guided[32:]] + plain[32:][guided[32:]]).abs().max() > 1e-2


def test_unlabelled_data_is_trained_without_guidance():
    g = torch.Generator().manual_seed(2)
    x1, x0 = torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randn(16, 3, generator=g, dtype=torch.float64)
    field = PaperField()
    tg = DecoupledMeanFlow(num_classes=CLASSES).targets(field, x1, None, torch.Generator().manual_seed(3), x0=x0)
    assert (tg.y == CLASSES).all()
    torch.testing.assert_close(tg.v, paper_targets(field, x0, x1, tg, 0.0), rtol=1e-10, atol=1e-10)


def normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_times_follow_the_official_proposal():
    """In the official time (T = 1 - t): flow rows T ~ sigmoid(0 + n); interval rows T = max(sigmoid(0.4 + n1),
    sigmoid(-1.2 + n2)) and R = the min (the training script's P_mean, P_mean_t, P_mean_r)."""
    n = 20000
    g = torch.Generator().manual_seed(4)
    x1 = torch.randn(n, 3, generator=g, dtype=torch.float64)
    tg = DecoupledMeanFlow().targets(PaperField(), x1, None, torch.Generator().manual_seed(5))
    half = n // 2
    big_t, big_r = 1 - tg.t, 1 - tg.t - tg.d
    for a in (0.2, 0.4, 0.6, 0.8):
        la = math.log(a / (1 - a))
        p1, p2 = normal_cdf(la - 0.4), normal_cdf(la + 1.2)
        assert abs((big_t[half:] < a).double().mean().item() - normal_cdf(la)) < 0.02
        assert abs((big_t[:half] < a).double().mean().item() - p1 * p2) < 0.02
        assert abs((big_r[:half] < a).double().mean().item() - (1 - (1 - p1) * (1 - p2))) < 0.02


def test_one_step_sampling_is_one_jump_of_the_average_velocity():
    field = PaperField()
    x0 = torch.randn(5, 3, dtype=torch.float64)
    ones = torch.ones(5, dtype=torch.float64)
    out = sample(field, x0, 1, fixed_d=DecoupledMeanFlow().sampling_d)
    torch.testing.assert_close(out, x0 + field(x0, 0 * ones, ones, torch.full((5,), CLASSES)))


def test_cost_model():
    """Guided: two forwards of model guidance, the product on half the rows (two forwards), then one forward and
    backward: (4, 1), twice flow matching's step; unguided (2, 1)."""
    assert DecoupledMeanFlow(num_classes=CLASSES).passes_per_row(64) == (4.0, 1.0)
    assert DecoupledMeanFlow(num_classes=CLASSES).step_cost(64) == pytest.approx(2.0)
    assert DecoupledMeanFlow(num_classes=0).passes_per_row(64) == (2.0, 1.0)
    assert DecoupledMeanFlow(num_classes=CLASSES, guidance_omega=0).passes_per_row(64) == (2.0, 1.0)


def test_bad_knobs_raise():
    with pytest.raises(ValueError, match="decoupled_depth"):
        build_objective("decoupled-meanflow", 0, {"decoupled_depth": -2})
    with pytest.raises(ValueError, match="guidance_omega"):
        build_objective("decoupled-meanflow", 0, {"guidance_omega": -1.0})


TINY = ["model=DiT-Nano", "batch_size=8", "eval_every=0", "logger=none", "sample_steps=[1]", "optim.lr=0.003"]


def test_init_from_a_flow_matching_run_gives_its_velocity_at_equal_times_then_trains_and_samples(tmp_path):
    flow_dir = tmp_path / "flow"
    Trainer(build_config("digits", "flow", None, [*TINY, "steps=2"]), flow_dir, progress=False).run()
    source = ckpt.latest_checkpoint(flow_dir)
    # every weight of the flow run made random: two steps leave the zero-initialised layers near zero, which would
    # hide what the split does (a trained checkpoint is what this stands for)
    randomise_weights(source)

    cfg = build_config("digits", "decoupled-meanflow", None, [*TINY, "steps=2"])
    cfg.init_from = str(flow_dir)
    trainer = Trainer(cfg, tmp_path / "dmf", progress=False)
    assert trainer.model.config["time_split"] == 1 and trainer.model.config["split_step"] == 1 / 128

    check_equal_at_equal_times(trainer, source, (1, 8, 8), torch.tensor([0, 3, 9, 10, 1, 10]))

    trainer.run()
    loaded = load_model(tmp_path / "dmf", "cpu")
    assert loaded.spec.objective == "decoupled-meanflow" and loaded.model.config["time_split"] == 1
    x = loaded.generate(4, 1, seed=0, labels=torch.arange(4))
    assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all()


def check_equal_at_equal_times(
    trainer: Trainer, source, shape: tuple[int, ...], labels: torch.Tensor, max_steps: int = 128
) -> None:
    """The trainer's online and EMA networks at d = 0 give the source checkpoint's at d = 1/max_steps, and differ
    at d > 0."""
    g = torch.Generator().manual_seed(8)
    x, t = torch.randn(len(labels), *shape, generator=g), torch.rand(len(labels), generator=g)
    for role, file in ((trainer.model, ckpt.ONLINE_WEIGHTS), (trainer.ema.module, ckpt.EMA_WEIGHTS)):
        flow = build_network(ckpt.read_config(source)["network"])
        flow.load_state_dict(ckpt.read_weights(source / file))
        with torch.no_grad():
            expected = flow.eval()(x, t, torch.full_like(t, 1 / max_steps), labels)
            got = role(x, t, torch.zeros_like(t), labels)
            later = role(x, t, 1 - t, labels)
        assert expected.abs().max() > 0.01
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        assert (later - expected).abs().max() > 1e-3


def randomise_weights(source) -> None:
    """Every weight of a checkpoint made random (a short run leaves its zero-initialised layers near zero)."""
    for file in (ckpt.ONLINE_WEIGHTS, ckpt.EMA_WEIGHTS):
        g = torch.Generator().manual_seed(7)
        weights = ckpt.read_weights(source / file)
        save_file(
            {k: v if k == "pos_embed" else 0.1 * torch.randn(v.shape, generator=g) for k, v in weights.items()},
            str(source / file),
        )


def test_the_held_step_size_must_be_the_sources(tmp_path, capsys):
    """A flow-matching run trained at max_steps 64 (flow level d = 1/64): a Decoupled MeanFlow run holding its step
    size at 1/128 (the default) is refused in one line naming the fix; at max_steps 64 it starts at the source's
    velocity at equal times."""
    flow_dir = tmp_path / "flow"
    Trainer(build_config("digits", "flow", None, [*TINY, "steps=1", "max_steps=64"]), flow_dir, progress=False).run()
    source = ckpt.latest_checkpoint(flow_dir)
    randomise_weights(source)

    argv = ["train", "--objective", "decoupled-meanflow", "--init-from", str(flow_dir), *TINY, "steps=1"]
    assert main([*argv, "--out", str(tmp_path / "refused"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "step size 1/64" in err and "1/max_steps = 1/128" in err and err.endswith("set max_steps=64"), err
    assert not (tmp_path / "refused" / "checkpoints").exists()

    cfg = build_config("digits", "decoupled-meanflow", None, [*TINY, "steps=1", "max_steps=64"])
    cfg.init_from = str(flow_dir)
    trainer = Trainer(cfg, tmp_path / "dmf", progress=False)
    assert trainer.model.config["split_step"] == 1 / 64
    check_equal_at_equal_times(trainer, source, (1, 8, 8), torch.tensor([0, 3, 9, 10, 1, 10]), max_steps=64)
    trainer.run()

    # a split source holds its own step size: fine-tuning it again asks for that one
    again = build_config("digits", "decoupled-meanflow", None, [*TINY, "steps=1", "max_steps=32"])
    again.init_from = str(tmp_path / "dmf")
    with pytest.raises(UserError, match="step size 1/64.*set max_steps=64"):
        Trainer(again, tmp_path / "dmf2", progress=False)


def test_a_converted_authors_checkpoint_is_fine_tuned_the_same_way(tmp_path):
    """The authors' JAX DiT converted by `shortcut convert` (random values in their layout; their network feeds
    -log2 d and was trained at d = 1/128) starts a Decoupled MeanFlow run with its own velocity at equal times."""
    rng = np.random.default_rng(0)
    arch = AuthorsArchitecture(32, 2, 2, 4, 4.0, 2, 3)  # hidden, depth, patch, channels, mlp ratio, classes, rows

    def tree():
        return nest({k: rng.normal(0, 0.1, v).astype(np.float32) for k, v in authors_parameter_shapes(arch).items()})

    state = {"params": tree(), "params_ema": tree(), "opt_state": (), "step": 7}
    (tmp_path / "ckpt.pkl").write_bytes(pickle.dumps({"train_state": state, "_timestamp": 0.0}))
    run = convert_jax_checkpoint(
        tmp_path / "ckpt.pkl", tmp_path / "run", num_heads=2, data_shape="4x8x8", vae="none", data="synthetic:4x8x8:2"
    )
    source = run.checkpoint
    values = ckpt.training_config(ckpt.read_config(source))
    values.update(objective="decoupled-meanflow", objective_args={}, init_from=str(tmp_path / "run"), steps=1)
    values.update(batch_size=8, eval_every=0, logger="none", sample_steps=[1], precision="fp32")
    trainer = Trainer(TrainConfig.from_dict(values), tmp_path / "dmf", progress=False)
    assert trainer.model.config["step_input"] == "level" and trainer.model.config["time_split"] == 1
    assert run.model == trainer.cfg.model and run.architecture.num_classes == 2
    check_equal_at_equal_times(trainer, source, (4, 8, 8), torch.tensor([0, 1, 2, 1]))
    trainer.run()
