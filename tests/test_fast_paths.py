"""Fast paths against the plain path on the CPU (the CUDA ones are in test_gpu.py).

torch.compile gives the eager samples; the host-sync-free copies change no value; the guided teacher
finds its rows the same way for level strata (CPU) and for uniform level draws (small batches); the
synthetic data source used by the GPU benchmarks is deterministic and trains.
"""

from __future__ import annotations

import pytest
import torch

from shortcut_models import seeding
from shortcut_models.config import build_config
from shortcut_models.data import build_source
from shortcut_models.errors import UserError
from shortcut_models.models import MLP
from shortcut_models.objectives import Shortcut
from shortcut_models.runtime import to_device
from shortcut_models.sampling import sample
from shortcut_models.training import Trainer


def trained_like_mlp() -> MLP:
    torch.manual_seed(1)
    model = MLP(dim=2, width=32, depth=2)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def test_compiled_model_gives_the_eager_samples_on_cpu():
    model = trained_like_mlp()
    compiled = torch.compile(model)
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    for steps in (1, 4):
        eager = sample(model, noise, steps)
        assert eager.abs().sum() > 0 and not torch.allclose(eager, noise)
        torch.testing.assert_close(sample(compiled, noise, steps), eager, atol=1e-5, rtol=1e-5)


def test_to_device_keeps_values_on_cpu():
    x = torch.arange(6.0).reshape(2, 3)
    out = to_device(x, "cpu")
    assert torch.equal(out, x) and out.device.type == "cpu"


class Affine(torch.nn.Module):
    """v = a x + b t + c d + e y: a teacher with a closed form, label-dependent."""

    num_classes = 10

    def forward(self, x, t, d, y):
        shape = (-1,) + (1,) * (x.dim() - 1)
        return 0.5 * x + (0.2 * t + 0.1 * d + 0.03 * y.float()).view(shape)


@pytest.mark.parametrize("batch", [16, 256])  # 16: 2 self-consistency rows, levels drawn uniformly
def test_guided_teacher_rows_match_manual_guidance(batch):
    x1 = torch.randn(batch, 2, generator=torch.Generator().manual_seed(0))
    y = torch.arange(batch) % 10
    w = 2.0
    objective = Shortcut(num_classes=10, bootstrap_cfg=True, cfg_scale=w)
    found = False
    for seed in range(20):  # until a draw puts a row at the finest level (always so for 256)
        tg = objective.targets(Affine(), x1, y, seeding.generator(seed, 1, 0))
        nb = int(tg.bootstrap.sum())
        guided = (tg.d[:nb] == 2.0 ** -(objective.num_levels - 1)).nonzero().squeeze(1)
        if guided.numel():
            found = True
            break
    assert found
    plain = objective.teacher_target(Affine(), tg.x_t[:nb], tg.t[:nb], tg.d[:nb], tg.y[:nb])
    manual = objective.teacher_target(Affine(), tg.x_t[:nb], tg.t[:nb], tg.d[:nb], tg.y[:nb], guided)
    torch.testing.assert_close(tg.v[:nb], manual)
    # guidance moves exactly the guided rows: v_u + w (v_c - v_u) differs from v_c where y != null
    moved = (manual - plain).abs().sum(dim=1) > 0
    assert moved[guided].all() and moved.sum() == guided.numel()


def test_synthetic_source_is_deterministic_and_validated():
    src = build_source("synthetic:4x8x8:10")
    assert src.shape == (4, 8, 8) and src.num_classes == 10
    x, y = src.batch(3, 16, 0)
    x2, y2 = src.batch(3, 16, 0)
    assert torch.equal(x, x2) and torch.equal(y, y2) and x.shape == (16, 4, 8, 8)
    assert not torch.equal(src.batch(4, 16, 0)[0], x)
    assert 0.8 < x.std().item() < 1.2 and int(y.max()) < 10
    assert build_source("synthetic:3x4x4").num_classes == 0
    for bad in ("synthetic:", "synthetic:4xAx8", "synthetic:4x8x8:-1", "synthetic:0x8x8", "synthetic:4x8x8:3:1"):
        with pytest.raises(UserError, match="synthetic:CxHxW"):
            build_source(bad)


def test_trainer_runs_on_synthetic_latent_shaped_data(tmp_path):
    cfg = build_config("celebahq256", "shortcut", None, ["model=DiT-Nano", "data=synthetic:4x8x8", "batch_size=16",
                                                          "logger=none", "steps=3", "device=cpu", "precision=fp32"])
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    losses = [float(trainer.train_step(step)["loss"]) for step in range(3)]
    assert all(loss == loss and loss > 0 for loss in losses)
