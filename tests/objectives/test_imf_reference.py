"""iMF's targets and loss against the official JAX code (imeanflow/imf.py, ``iMeanFlow.forward``), row by row.

Both sides get the same data, noise, times, guidance draws, label dropout and a deterministic network: a
closed-form field F(x, t, d, w, lo, hi, y) written in torch (our interface, t = 0 noise) and in jnp (theirs,
t = 1 noise), whose auxiliary v-head is its own value at d = 0 (what our single-head network uses as its
predicted velocity). The official code draws through ``jax.random``: a stand-in for the ``jax`` its module
sees hands it the standard draws ours made (mapped between the conventions: n -> -n for the logit-normal
times, 1 - u for the interval bounds, rows rotated since its flow rows lead) and records what it stops the
gradient of, which holds its target pieces (du/dt, the guided velocity v_g) and its adaptive weights.

Compared in float64 (jax x64 on inside the test only), within 1e-5: our target against theirs, v_g - h du/dt
turned to our time, and our loss against theirs less its auxiliary v-head term. The same comparison fails
when a component is switched off (the predicted velocity in the tangent, the guidance scale).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

from shortcut_models import path
from shortcut_models.objectives import ImprovedMeanFlow, build_objective
from shortcut_models.objectives import imf as imf_module
from shortcut_models.seeding import RowDraws

B, C, H = 16, 2, 4  # batch, channels, image side
NUM_CLASSES = 10
SEED = 3


# ---------------------------------------------------------------------------------------- the network, twice
def field(xp, x, t, d, w, lo, hi, y):
    """F in our time (t = 0 noise) for array module ``xp`` (torch or jnp); per-row inputs broadcast over x."""
    return (
        xp.tanh(0.8 * x + 0.3) * (1 + 0.5 * t + 0.7 * d + 0.2 * t * d)
        - 0.3 * x
        + 0.4 * (1 - 1 / w) * xp.cos(x + 0.1 * y)
        + 0.25 * lo
        - 0.15 * hi * x
    )


def torch_field(x, t, d, y, guidance=None):
    """Our interface: the average velocity u = F (guidance None: w = 1 on [0, 1])."""
    g = torch.tensor([[1.0, 0.0, 1.0]]).expand(len(x), 3) if guidance is None else guidance
    rows = [c.to(torch.float64).reshape(-1, 1, 1, 1) for c in (t, d, *g.unbind(1), y)]
    return field(torch, x, *rows)


def jax_network(nn, jnp):
    """Their interface (imfDiT.__call__): z NHWC, t = 1 noise, h = t - r, interval [t_min, t_max]; -> (u, v)."""

    class FieldNet(nn.Module):
        num_classes: int = NUM_CLASSES
        eval: bool = False

        def __call__(self, x, t, h, w, t_min, t_max, y):
            rows = [jnp.asarray(a, jnp.float64).reshape(-1, 1, 1, 1) for a in (t, h, w, t_min, t_max, y)]
            t, h, w, t_min, t_max, y = rows
            u = -field(jnp, x, 1 - t, h, w, 1 - t_max, 1 - t_min, y)  # velocity towards noise: the sign flips
            v = -field(jnp, x, 1 - t, 0 * h, w, 1 - t_max, 1 - t_min, y)
            return u, v

    return FieldNet


# ------------------------------------------------------------------------------------------ the official code
@pytest.fixture(scope="module")
def official(jax_reference):
    """(imf module, jax): imeanflow/imf.py imported with its root first on sys.path; the generic package name
    ``models`` (meanflow/ has one too) is taken out of sys.modules again afterwards."""
    pytest.importorskip("einops", reason="the reference code needs einops")
    import jax

    root = jax_reference("imeanflow")
    saved_path = list(sys.path)
    generic = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "models" or k.startswith("models.")}
    try:
        sys.path.insert(0, str(root))
        spec = importlib.util.spec_from_file_location("imeanflow_imf", root / "imf.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path
        for k in [k for k in sys.modules if k == "models" or k.startswith("models.")]:
            del sys.modules[k]
        sys.modules.update(generic)
    return module, jax


class Draws:
    """A stand-in for the ``jax`` the official module sees: ``random.normal`` and ``random.uniform`` hand out
    the given standard draws in order (uniform scaled to [minval, maxval)); ``lax.stop_gradient`` records
    its argument; everything else is jax."""

    def __init__(self, jax, normals, uniforms):
        self._jax, self.normals, self.uniforms, self.stopped = jax, list(normals), list(uniforms), []
        self.random = types.SimpleNamespace(normal=self._normal, uniform=self._uniform, split=jax.random.split)
        self.lax = types.SimpleNamespace(stop_gradient=self._stop)

    def __getattr__(self, name):
        return getattr(self._jax, name)

    def _normal(self, key, shape, dtype=None):
        return self._jax.numpy.asarray(self.normals.pop(0), np.float64).reshape(shape)

    def _uniform(self, key, shape, minval=0.0, maxval=1.0, dtype=None):
        u = self._jax.numpy.asarray(self.uniforms.pop(0), np.float64).reshape(shape)
        return minval + (maxval - minval) * u

    def _stop(self, x):
        self.stopped.append(x)
        return self._jax.lax.stop_gradient(x)


@contextlib.contextmanager
def x64(jax):
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


# ----------------------------------------------------------------------------------------------- the batch
def batch():
    """Data and noise (float32 values, as float64: the official code casts the data to float32), labels."""
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(B, C, H, H, generator=g).double()
    x0 = torch.randn(B, C, H, H, generator=g).double()
    return x1, x0, torch.randint(0, NUM_CLASSES, (B,), generator=g)


def our_standard_draws(objective):
    """The standard draws our build_targets makes after the noise, in its documented order, replayed."""
    draws = RowDraws.for_batch(B, torch.Generator().manual_seed(SEED), torch.device("cpu"))
    n_a, n_c = draws.normal((), torch.float64), draws.normal((), torch.float64)
    u_lo, u_hi, u_w, u_drop = draws.uniform(), draws.uniform(), draws.uniform(), draws.uniform()
    return n_a, n_c, u_lo, u_hi, u_w, u_drop


def official_rows(objective):
    """Our row i is official row (i - interval rows) mod B (their flow rows lead): the index to reorder by."""
    n_interval = objective.kind_rows(B)[0]
    ours_of_theirs = (torch.arange(B) + n_interval) % B  # official row j holds our row (j + interval rows) mod B
    return ours_of_theirs


def run_official(official, objective, conditional):
    """The official forward on our draws; returns (their target for u in our time and layout, their loss
    less the auxiliary v term, their plain mean squared error of u)."""
    module, jax = official
    jnp = jax.numpy
    x1, x0, y = batch()
    n_a, n_c, u_lo, u_hi, u_w, u_drop = our_standard_draws(objective)
    j = official_rows(objective)  # ours_of_theirs: their row k is our row j[k]

    def nchw_to_nhwc(a):
        return np.asarray(a[j].permute(0, 2, 3, 1).numpy(), np.float64)

    row = lambda a: np.asarray(a[j].double().numpy())  # noqa: E731
    normals = [-row(n_a), -row(n_c), nchw_to_nhwc(x0)]  # t_ref = sigmoid(-0.4 + n_ref) = 1 - sigmoid(0.4 - n_ref)
    w_draw = row(u_w) if conditional else np.zeros(B)  # unguided: w = (1 + 7)^0 = 1
    uniforms = [1 - row(u_hi), 1 - row(u_lo), w_draw, row(u_drop)]  # t_min = 1 - hi, t_max = 1 - lo
    labels = y[j].numpy() if conditional else np.full(B, NUM_CLASSES)

    stand_in = Draws(jax, normals, uniforms)
    original = module.jax
    module.jax = stand_in
    module.imfDiT.field_net = jax_network(module.nn, jnp)
    try:
        model = module.iMeanFlow(
            model_str="field_net",
            num_classes=NUM_CLASSES,
            data_proportion=objective.flow_share,
            class_dropout_prob=objective.class_dropout,
            norm_eps=objective.recipe.adaptive_eps,
        )
        loss, logs = model.apply(
            {},
            jnp.asarray(nchw_to_nhwc(x1)),
            jnp.asarray(labels),
            method=model.forward,
            rngs={"gen": jax.random.key(0)},
        )
    finally:
        module.jax = original
    du_dt, v_g, weight_u, weight_v = (np.asarray(a) for a in stand_in.stopped)
    assert not stand_in.normals and not stand_in.uniforms  # every draw was used
    a, c = torch.sigmoid(0.4 + n_a), torch.sigmoid(0.4 + n_c)
    flow = np.arange(B) < int(B * objective.flow_share)  # their leading rows
    h = np.where(flow, 0.0, (a - c).abs()[j].numpy()).reshape(B, 1, 1, 1)  # their t - r
    target_theirs = v_g - h * du_dt  # u + h sg(du/dt) - v_g = u - (v_g - h du/dt)
    ours_layout = torch.empty(B, C, H, H, dtype=torch.float64)
    ours_layout[j] = -torch.from_numpy(np.ascontiguousarray(target_theirs)).permute(0, 3, 1, 2)  # our time: - sign
    aux = (weight_v.reshape(-1) - objective.recipe.adaptive_eps) / weight_v.reshape(-1)  # their v-head's weighted rows
    return ours_layout, float(loss) - float(aux.mean()), float(logs["loss_u"])


def run_ours(objective, conditional):
    x1, x0, y = batch()
    tg = objective.targets(torch_field, x1, y if conditional else None, torch.Generator().manual_seed(SEED), x0=x0)
    loss, logs = objective.loss(torch_field, tg)
    return tg, float(loss), float(logs["loss"])


CASES = {
    "conditional": (True, {}),
    # dropped rows reach the interval rows; a large eps makes the adaptive weight visible in the loss (at the
    # official 0.01 every row's weighted loss s / (s + eps) is close to 1)
    "conditional, most labels dropped, eps 10": (True, {"class_dropout": 0.6, "adaptive_eps": 10.0}),
    "unconditional": (False, {}),
}


def compare(official, objective, conditional):
    _, jax = official
    with x64(jax):
        theirs, their_loss, their_mse = run_official(official, objective, conditional)
    tg, our_loss, our_mse = run_ours(objective, conditional)
    torch.testing.assert_close(tg.v, theirs, rtol=1e-5, atol=1e-5)
    assert our_loss == pytest.approx(their_loss, rel=1e-5, abs=1e-6)
    assert our_mse == pytest.approx(their_mse, rel=1e-5, abs=1e-6)
    return tg


@pytest.fixture(autouse=True)
def no_eps(monkeypatch):
    """The official path has no eps: x_t = (1 - t) noise + t data here too, for the comparison."""
    monkeypatch.setattr(path, "EPS", 0.0)


@pytest.mark.parametrize("case", CASES)
def test_targets_and_loss_equal_the_official_code(official, case):
    conditional, knobs = CASES[case]
    objective = build_objective("imf", NUM_CLASSES, knobs)
    tg = compare(official, objective, conditional)
    interval = tg.d > 0
    assert interval.sum() == 8 and (tg.guidance[:, 0] > 1).any() == conditional
    if knobs.get("class_dropout", 0) > 0.5:  # some interval rows dropped: the spill was compared
        assert (tg.y[interval] == NUM_CLASSES).any()


def test_the_comparison_fails_without_the_predicted_velocity_in_the_tangent(official, monkeypatch):
    objective = build_objective("imf", NUM_CLASSES)
    original = ImprovedMeanFlow.guided_velocity

    def path_velocity_tangent(self, net, x_t, t, v, labels, w, guided):
        return v, original(self, net, x_t, t, v, labels, w, guided)[1]  # MeanFlow's tangent: the path velocity

    monkeypatch.setattr(ImprovedMeanFlow, "guided_velocity", path_velocity_tangent)
    with pytest.raises(AssertionError, match="Mismatched elements"):
        compare(official, objective, True)


def test_the_comparison_fails_without_the_guidance_scale(official, monkeypatch):
    objective = build_objective("imf", NUM_CLASSES)
    monkeypatch.setattr(imf_module, "guidance_scales", lambda u, cfg_max, cfg_beta: torch.ones_like(u))
    with pytest.raises(AssertionError, match="Mismatched elements"):
        compare(official, objective, True)
