"""The any-step Euler sampler: exactness, convergence, schedules, guidance, argument checks, and a
torch.compile'd model giving the eager samples on the CPU (the CUDA fast paths are in test_gpu.py)."""

import math
import os
import shutil

import pytest
import torch
from torch import nn

from shortcut_models import sample, step_schedule
from shortcut_models.models import MLP

EPS = 1e-5


class SinglePointField(nn.Module):
    """Optimal velocity when the data is one point x*: straight lines, so Euler is exact."""

    num_classes = 0

    def __init__(self, target):
        super().__init__()
        self.target = target
        self.seen_d = []

    def forward(self, x, t, d, y):
        self.seen_d.append(d.clone())
        a = (1 - (1 - EPS) * t)[:, None]
        x0 = (x - t[:, None] * self.target) / a
        return self.target - (1 - EPS) * x0


class GaussianField(nn.Module):
    """Marginal velocity of the path from N(0, 1) noise to N(mu, s^2) data (per dimension)."""

    num_classes = 0

    def __init__(self, mu, s):
        super().__init__()
        self.mu, self.s = mu, s

    def forward(self, x, t, d, y):
        t = t[:, None]
        a = 1 - (1 - EPS) * t
        var = a**2 + (t * self.s) ** 2
        return self.mu + (t * self.s**2 - (1 - EPS) * a) / var * (x - t * self.mu)


def test_single_point_is_exact_in_one_step_and_any_steps():
    target = torch.tensor([[1.5, -0.5, 2.0]])
    noise = torch.randn(16, 3)
    for steps in (1, 3, 7, 128):
        x = sample(SinglePointField(target), noise, steps)
        assert torch.allclose(x, target + EPS * noise, atol=1e-5), steps


def test_error_falls_with_steps_on_gaussian_flow():
    mu, s = 2.0, 0.5
    noise = torch.randn(4096, 2, generator=torch.Generator().manual_seed(0))
    exact = mu + math.sqrt(EPS**2 + s**2) * noise
    errors = [
        (sample(GaussianField(mu, s), noise, n) - exact).abs().max().item() for n in (1, 2, 4, 8, 16, 32, 64, 128)
    ]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[0] > 1.0 and errors[-1] < 0.05
    assert 1.7 < errors[-2] / errors[-1] < 2.3  # Euler is first order: halving the step halves the error


@pytest.mark.parametrize("steps", range(1, 129))
def test_any_step_schedule_sums_to_one_on_grid(steps):
    sizes = step_schedule(steps)
    assert len(sizes) == steps
    assert sum(sizes) == 1.0  # exact: powers of two
    assert all(math.log2(s).is_integer() for s in sizes)
    start = 0.0
    for size in sizes:
        assert (start / size).is_integer()  # each step starts on its own grid
        start += size


def test_schedule_examples():
    assert step_schedule(3) == [0.5, 0.25, 0.25]
    assert step_schedule(4) == [0.25] * 4
    assert step_schedule(6) == [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]


@pytest.mark.parametrize("bad", [0, -1, 129, 2.5, "4", True, None])
def test_invalid_steps_raise(bad):
    with pytest.raises(ValueError, match="integer from 1 to 128"):
        sample(SinglePointField(torch.zeros(1, 2)), torch.randn(2, 2), bad)


def test_fixed_d_holds_flow_models_at_finest_level():
    field = SinglePointField(torch.zeros(1, 2))
    sample(field, torch.randn(3, 2), 4, fixed_d=1 / 128)
    assert all(torch.equal(d, torch.full((3,), 1 / 128)) for d in field.seen_d) and len(field.seen_d) == 4
    field = SinglePointField(torch.zeros(1, 2))
    sample(field, torch.randn(3, 2), 3)
    assert [d[0].item() for d in field.seen_d] == [0.5, 0.25, 0.25]


class LabelField(nn.Module):
    """v = y-dependent constant; counts calls and batch sizes."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, x, t, d, y):
        self.batches.append(x.shape[0])
        return torch.stack([y.float(), -y.float()], dim=1) + 0 * x


def test_guidance_formula_in_one_batched_call_per_step():
    model = LabelField()
    noise = torch.zeros(5, 2)
    y = torch.tensor([0, 1, 2, 1, 0])
    w = 2.5
    x = sample(model, noise, 4, y=y, cfg_scale=w)
    v_c = torch.stack([y.float(), -y.float()], 1)
    v_u = torch.full((5, 2), 3.0) * torch.tensor([1.0, -1.0])
    assert torch.allclose(x, v_u + w * (v_c - v_u))
    assert model.batches == [10, 10, 10, 10]
    model.batches.clear()
    sample(model, noise, 2, y=y)
    assert model.batches == [5, 5]


def test_unconditional_uses_null_label_and_keeps_dtype():
    model = LabelField()
    x = sample(model, torch.zeros(2, 2, dtype=torch.float64), 1)
    assert x.dtype == torch.float64
    assert torch.allclose(x, torch.tensor([[3.0, -3.0], [3.0, -3.0]], dtype=torch.float64))


def trained_like_mlp() -> MLP:
    torch.manual_seed(1)
    model = MLP(dim=2, width=32, depth=2)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


@pytest.mark.slow  # torch.compile on the CPU
def test_compiled_model_gives_the_eager_samples_on_cpu(tmp_path, monkeypatch):
    """Compiled kernels round differently from eager ones (vector widths, fused multiply-adds): 1e-5.

    They are built in a fresh cache: kernels that an earlier run left in the shared one (/tmp/torchinductor_*)
    under another ATEN_CPU_CAPABILITY were reused and gave NaN samples."""
    compiler = os.environ.get("CXX", "g++")  # what torch.compile's CPU backend builds its kernels with
    if shutil.which(compiler) is None:
        pytest.skip(f"torch.compile on the CPU needs a C++ compiler: {compiler} is not installed")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    model = trained_like_mlp()
    compiled = torch.compile(model)
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    for steps in (1, 4):
        eager = sample(model, noise, steps)
        assert eager.abs().sum() > 0 and not torch.allclose(eager, noise)
        torch.testing.assert_close(sample(compiled, noise, steps), eager, atol=1e-5, rtol=1e-5)
