"""The baselines' target builders against the authors' JAX targets (baselines/targets_*.py), row by row.

Same noise, times and data on both sides, and a deterministic elementwise teacher written twice (torch
and jax). Needs the authors' code at ``SHORTCUT_REFERENCE_CODE`` (see ../shared/reference/README.md).
"""

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from shortcut_models.objectives import (
    ConsistencyDistillation,
    ConsistencyTraining,
    LiveReflow,
    Progress,
    ProgressiveDistillation,
)

M, B, SHAPE = 128, 32, (4, 4, 1)


@pytest.fixture(scope="module")
def reference(authors_code):
    """``reference(name)``: the authors' module baselines/targets_<name>.py, and jax."""
    import jax

    def load(name):
        file = authors_code / "baselines" / f"targets_{name}.py"
        spec = importlib.util.spec_from_file_location(f"authors_targets_{name}", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load, jax


def torch_net(a):
    """A deterministic network (elementwise) on this package's interface: d is the step size."""
    return lambda x, t, d, y: torch.sin(a * x) * (1 + t[:, None, None, None]) + 0.5 * d[:, None, None, None] - 0.2 * x


def jax_net(a):
    """The same network on the authors' interface: dt_base is the level, d = 2^-dt_base."""
    import jax.numpy as jnp

    def call(x, t, dt_base, labels, train=False):
        d = jnp.broadcast_to(2.0 ** (-jnp.asarray(dt_base, jnp.float32)), t.shape)
        return jnp.sin(a * x) * (1 + t[:, None, None, None]) + 0.5 * d[:, None, None, None] - 0.2 * x

    return call


def flags(**model):
    base = {"denoise_timesteps": M, "class_dropout_prob": 0.0, "num_classes": 0, "bootstrap_every": 8}
    base.update(model)
    return SimpleNamespace(model=base, max_steps=700, batch_size=B)


def state(step, net):
    return SimpleNamespace(step=step, call_model=net, call_model_ema=net)


def data(jax, key):
    """x1 (jax and torch), the noise the authors' code draws from ``key``, and their time key."""
    x1 = np.random.default_rng(0).standard_normal((B, *SHAPE)).astype(np.float32)
    time_key, noise_key = jax.random.split(key, 2)
    x0 = np.asarray(jax.random.normal(noise_key, x1.shape))
    return x1, x0, time_key


def t_(a):
    return torch.from_numpy(np.array(a)).float()


def check(ours, x_t, v, t, dt_base):
    torch.testing.assert_close(ours.x_t, t_(x_t), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.t, t_(t), atol=0, rtol=0)
    torch.testing.assert_close(ours.d, 2.0 ** -t_(dt_base), atol=0, rtol=0)
    torch.testing.assert_close(ours.v, t_(v), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("step", [0, 250, 699])
def test_consistency_training_matches_authors(reference, step):
    load, jax = reference
    key = jax.random.PRNGKey(step)
    x1, x0, _ = data(jax, key)
    x_t, v, t, dt_base, _, _ = load("consistency_training").get_targets(
        flags(), key, state(step, jax_net(1.3)), x1, np.zeros(B, np.int32)
    )
    obj = ConsistencyTraining()
    d = 2.0 ** -obj.level(Progress(step, 700))
    ours = obj.build(torch_net(1.3), t_(x0), t_(x1), t_(t), torch.zeros(B, dtype=torch.long), d)
    check(ours, x_t, v, t, np.broadcast_to(dt_base, (B,)))


def test_consistency_distillation_matches_authors(reference):
    load, jax = reference
    key = jax.random.PRNGKey(3)
    x1, x0, _ = data(jax, key)
    x_t, v, t, dt_base, _, _ = load("consistency_distillation").get_targets(
        flags(), key, state(0, jax_net(0.7)), state(0, jax_net(1.9)), x1, np.zeros(B, np.int32)
    )
    obj = ConsistencyDistillation()
    ours = obj.build(torch_net(1.9), torch_net(0.7), t_(x0), t_(x1), t_(t), torch.zeros(B, dtype=torch.long))
    check(ours, x_t, v, t, dt_base)


@pytest.mark.parametrize("step", [0, 350, 699])
def test_progressive_distillation_matches_authors(reference, step):
    load, jax = reference
    key = jax.random.PRNGKey(10 + step)
    x1, x0, _ = data(jax, key)
    cfg = flags(bootstrap_ema=1, bootstrap_cfg=0, cfg_scale=0.0)
    x_t, v, t, dt_base, _, _ = load("progressive").get_targets(
        cfg, key, state(step, jax_net(0.4)), state(step, jax_net(1.1)), x1, np.zeros(B, np.int32)
    )
    obj = ProgressiveDistillation()
    d = 2.0 ** -obj.level(Progress(step, 700))
    ours = obj.build(torch_net(1.1), t_(x0), t_(x1), t_(t), torch.zeros(B, dtype=torch.long), d)
    check(ours, x_t, v, t, dt_base)


def test_live_reflow_rows_match_authors(reference):
    load, jax = reference
    key = jax.random.PRNGKey(5)
    x1 = np.random.default_rng(1).standard_normal((B, *SHAPE)).astype(np.float32)
    x_t, v, t, dt_base, _, _ = load("livereflow").get_targets(
        flags(cfg_scale=0), key, state(0, jax_net(1.5)), x1, np.zeros(B, np.int32)
    )
    _, time_key, noise_key = jax.random.split(key, 3)
    nr = B // 8
    x0 = np.asarray(jax.random.normal(noise_key, x1.shape))[:nr]
    t_reflow = np.asarray(jax.random.randint(time_key, (nr,), minval=0, maxval=M)).astype(np.float32) / M
    obj = LiveReflow()
    ours_x_t, ours_v = obj.reflow_rows(torch_net(1.5), t_(x0), t_(t_reflow), torch.zeros(nr, dtype=torch.long))
    torch.testing.assert_close(t_(t_reflow), t_(t[:nr]), atol=0, rtol=0)
    torch.testing.assert_close(ours_x_t, t_(x_t[:nr]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_v, t_(v[:nr]), atol=1e-5, rtol=1e-5)
    assert np.all(np.asarray(dt_base[:nr]) == 0)  # the reflow rows train d = 1
    assert obj.kind_rows(B) == (nr, B - nr)
