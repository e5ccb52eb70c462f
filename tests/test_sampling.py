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
from shortcut_models.sampling import renoise_starts, renoising_sample

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


# ------------------------------------------------------------ the re-noising sampler


class CurvedMap(nn.Module):
    """A closed-form average-velocity network, u(x, t, d, y) = tanh(W x) (1 + t) + d^2 + 0.1 y (float64)."""

    num_classes = 4

    def __init__(self):
        super().__init__()
        self.w = torch.tensor([[0.9, -0.4, 0.2], [0.3, 0.8, -0.5], [-0.6, 0.1, 0.7]], dtype=torch.float64)
        self.seen_d = []

    def forward(self, x, t, d, y):
        self.seen_d.append(d.clone())
        t, d = t.double(), d.double()
        return torch.tanh(x @ self.w.T) * (1 + t[:, None]) + d[:, None] ** 2 + 0.1 * y[:, None].double()


def test_renoising_sampler_is_jump_renoise_jump():
    """Each step jumps to the data end, x1 = x + (1 - t) u(x, t, 1 - t); the next starts at t' on the path from the
    given fresh noise z to x1, (1 - (1 - eps) t') z + t' x1; one step is the Euler sampler's one step."""
    net = CurvedMap()
    g = torch.Generator().manual_seed(4)
    noise, z1, z2 = (torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(3))
    y = torch.arange(6) % 4

    def u(x, t, d):
        return net(x, torch.full((6,), t), torch.full((6,), d), y)

    assert torch.allclose(renoising_sample(net, noise, [0.0], y), sample(net, noise, 1, y), rtol=0, atol=1e-12)
    x1 = noise + u(noise, 0.0, 1.0)
    x = (1 - (1 - EPS) * 0.5) * z1 + 0.5 * x1
    expected = x + 0.5 * u(x, 0.5, 0.5)
    got = renoising_sample(net, noise, renoise_starts(2), y, [z1])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # three steps at given times, the step-size input held at 1/128 (flow-matching networks)
    x1 = noise + u(noise, 0.0, 1 / 128)
    x = (1 - (1 - EPS) * 0.25) * z1 + 0.25 * x1
    x1 = x + 0.75 * u(x, 0.25, 1 / 128)
    x = (1 - (1 - EPS) * 0.75) * z2 + 0.75 * x1
    expected = x + 0.25 * u(x, 0.75, 1 / 128)
    net.seen_d.clear()
    got = renoising_sample(net, noise, renoise_starts(3, [0.25, 0.75]), y, [z1, z2], fixed_d=1 / 128)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert all(torch.all(d == 1 / 128) for d in net.seen_d) and len(net.seen_d) == 3
    # the fresh noise drawn from a generator is the same as given
    drawn = renoising_sample(net, noise, [0.0, 0.5], y, generator=torch.Generator().manual_seed(9))
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    torch.testing.assert_close(drawn, renoising_sample(net, noise, [0.0, 0.5], y, [z]), rtol=0, atol=1e-12)


def test_renoising_sampler_with_guidance_jumps_along_the_guided_velocity():
    net = CurvedMap()
    g = torch.Generator().manual_seed(5)
    noise, z = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(2))
    y, null = torch.tensor([0, 1, 2, 3]), torch.full((4,), 4)

    def guided(x, t):
        tt, dd = torch.full((4,), t), torch.full((4,), 1 - t)
        return net(x, tt, dd, null) + 2.0 * (net(x, tt, dd, y) - net(x, tt, dd, null))

    x1 = noise + guided(noise, 0.0)
    x = (1 - (1 - EPS) * 0.4) * z + 0.4 * x1
    expected = x + 0.6 * guided(x, 0.4)
    got = renoising_sample(net, noise, [0.0, 0.4], y, [z], cfg_scale=2.0)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


class GaussianFlowMap(nn.Module):
    """The exact flow map of the path from N(0, 1) noise to N(mu, s^2) data: x_t = m(t) + sigma(t) n, with
    m(t) = t mu and sigma(t)^2 = (1 - (1 - eps) t)^2 + t^2 s^2, as an average velocity over [t, t + d]."""

    num_classes = 0

    def __init__(self, mu, s):
        super().__init__()
        self.mu, self.s = mu, s

    def sigma(self, t):
        return torch.sqrt((1 - (1 - EPS) * t) ** 2 + (t * self.s) ** 2)

    def forward(self, x, t, d, y):
        t, d = t.double()[:, None], d.double()[:, None]
        end = (t + d) * self.mu + self.sigma(t + d) * (x - t * self.mu) / self.sigma(t)
        return (end - x) / d


def test_renoising_with_an_exact_flow_map_keeps_the_data_distribution():
    """Re-noised onto the path's marginal at t' and jumped again, the exact map's samples stay N(mu, s^2)."""
    mu, s = 2.0, 0.5
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(200_000, 1, generator=g, dtype=torch.float64)
    fresh = [torch.randn(200_000, 1, generator=g, dtype=torch.float64) for _ in range(2)]
    x = renoising_sample(GaussianFlowMap(mu, s), noise, [0.0, 0.3, 0.7], fresh=fresh)
    assert abs(x.mean().item() - mu) < 0.01 and abs(x.std().item() - s) < 0.01
    # re-noised with the wrong weights (the fresh noise as data), the spread is not the data's
    wrong = renoising_sample(GaussianFlowMap(mu, s), noise, [0.0, 0.5], fresh=[fresh[0] * 3])
    assert abs(wrong.std().item() - s) > 0.1


def test_renoise_start_times_and_their_checks():
    assert renoise_starts(1) == [0.0] and renoise_starts(2) == [0.0, 0.5] and renoise_starts(4) == [0, 0.25, 0.5, 0.75]
    assert renoise_starts(2, [0.45]) == [0.0, 0.45]
    for steps, at, message in [
        (2, [0.3, 0.6], "re-noise at 1 time"),
        (1, [0.5], "re-noise at 0 time"),
        (3, [0.6, 0.3], "increase within"),
        (2, [1.0], "increase within"),
        (2, [0.0], "increase within"),
        (2, [math.nan], "increase within"),
    ]:
        with pytest.raises(ValueError, match=message):
            renoise_starts(steps, at)
    with pytest.raises(ValueError, match="integer from 1 to 128"):
        renoise_starts(0)
    with pytest.raises(ValueError, match="times must start at 0"):
        renoising_sample(CurvedMap(), torch.zeros(2, 3, dtype=torch.float64), [0.2, 0.5])
