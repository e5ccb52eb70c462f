"""Converted checkpoints of the authors' JAX code compute what their own network computes.

Each test builds the authors' flax DiT from their code (SHORTCUT_REFERENCE_CODE), puts random values
in every parameter (so their zero-initialised layers count too), pickles a checkpoint with their own
Checkpoint and TrainStateEma classes, converts it with `shortcut convert --from-jax`, and compares.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shortcut_models.cli import main
from shortcut_models.convert import (
    authors_parameter_shapes,
    convert_jax_checkpoint,
    infer_architecture,
    read_train_state,
)
from shortcut_models.inference import load_model

# (patch, hidden, depth, heads, mlp ratio, their num_classes, latent size): patch 2 conditional, patch 4
# unconditional (their CelebA setting: one class plus the null label, every label the null one).
SHAPES = [(2, 64, 2, 4, 4, 3, 8), (4, 48, 3, 3, 2, 1, 16)]


def build_authors_checkpoint(out_dir, patch, hidden, depth, heads, mlp_ratio, classes, size, step=4321):
    """The authors' DiT with random parameters, saved as their trainer saves it; returns (apply, params)."""
    import jax
    import jax.numpy as jnp
    import optax
    from model import DiT as AuthorsDiT
    from utils.checkpoint import Checkpoint
    from utils.train_state import TrainStateEma

    net = AuthorsDiT(
        patch_size=patch,
        hidden_size=hidden,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        out_channels=4,
        class_dropout_prob=0.1,
        num_classes=classes,
        dtype=jnp.float32,
    )
    x = jnp.zeros((1, size, size, 4))
    zeros = jnp.zeros((1,))
    params = net.init({"params": jax.random.PRNGKey(0)}, x, zeros, zeros, jnp.zeros((1,), jnp.int32))["params"]
    paths, tree = jax.tree_util.tree_flatten_with_path(params)
    rng = np.random.default_rng(patch)

    def std(path) -> float:  # larger query and key weights: attention far from uniform, as in a trained net
        names = [getattr(key, "key", "") for key in path]
        return 0.3 if names[-2] in ("Dense_1", "Dense_2") and names[0].startswith("DiTBlock") else 0.05

    def randomised():
        return jax.tree_util.tree_unflatten(
            tree, [jnp.asarray(rng.normal(0, std(p), leaf.shape).astype(np.float32)) for p, leaf in paths]
        )

    online, ema = randomised(), randomised()
    tx = optax.chain(optax.adamw(learning_rate=lambda s: 1e-4, b1=0.9, b2=0.99, weight_decay=0.1))
    state = TrainStateEma.create(net, online, rng=jax.random.PRNGKey(1), tx=tx).replace(params_ema=ema, step=step)
    out_dir.mkdir(parents=True, exist_ok=True)
    cp = Checkpoint(str(out_dir / "authors_ckpt"), parallel=False)
    cp.train_state = state
    cp.save()  # their local save: a directory holding the pickle as its one file

    def apply(which, x_nchw, t, level, y):
        out = net.apply(
            {"params": online if which == "online" else ema},
            jnp.asarray(x_nchw.permute(0, 2, 3, 1).numpy()),
            jnp.asarray(t.numpy()),
            jnp.asarray(level.numpy()),
            jnp.asarray(y.numpy().astype(np.int32)),
        )
        return torch.from_numpy(np.array(out)).permute(0, 3, 1, 2)

    return out_dir / "authors_ckpt", apply


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def inputs(size, classes, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, size, size, generator=g)
    t = torch.rand(n, generator=g)
    level = torch.randint(0, 8, (n,), generator=g)
    their_y = torch.randint(0, classes + 1, (n,), generator=g)  # real labels and the null label
    return x, t, level, their_y


def our_labels(their_y, classes):
    """Their labels in our convention: an unconditional model (one class + null) has only our null label 0."""
    return torch.zeros_like(their_y) if classes == 1 else their_y


@pytest.mark.parametrize("shape", SHAPES, ids=["patch2-conditional", "patch4-unconditional"])
def test_converted_network_equals_the_authors(authors_code, tmp_path, shape):
    patch, hidden, depth, heads, mlp_ratio, classes, size = shape
    source, apply = build_authors_checkpoint(tmp_path, *shape)
    rc = main(
        ["convert", "--from-jax", str(source), "--num-heads", str(heads), "--data-shape", f"4x{size}x{size}"]
        + ["--vae", "none", "--out", str(tmp_path / "run"), "--quiet"]
    )
    assert rc == 0
    loaded = load_model(tmp_path / "run", device="cpu")
    assert loaded.step == 4321 and loaded.spec.network["args"]["authors_quirks"] is True
    assert loaded.spec.network["args"]["step_input"] == "level"  # their network feeds -log2 d
    assert loaded.num_classes == (0 if classes == 1 else classes)
    x, t, level, their_y = inputs(size, classes)
    d = 2.0 ** -level.float()
    with torch.no_grad():
        ours_ema = loaded.model(x, t, d, our_labels(their_y, classes))
    if classes == 1:
        their_y = torch.ones_like(their_y)  # their unconditional model only ever sees the null label
    theirs_ema = apply("ema", x, t, level, their_y)
    assert relative_difference(ours_ema, theirs_ema) < 1e-4

    # the online weights went to model.safetensors: the same comparison through a fresh network
    from shortcut_models.checkpoints import ONLINE_WEIGHTS, load_weights
    from shortcut_models.models import build_network

    online = build_network(loaded.spec.network)
    load_weights(online, loaded.path / ONLINE_WEIGHTS)
    with torch.no_grad():
        ours_online = online(x, t, d, our_labels(their_y, classes))
    assert relative_difference(ours_online, apply("online", x, t, level, their_y)) < 1e-4
    assert relative_difference(ours_online, ours_ema) > 0.1  # the two weight sets really differ


def test_parameter_shapes_are_those_of_the_authors_network(authors_code, tmp_path):
    """authors_parameter_shapes (used to build test and benchmark checkpoints) = their flax init's shapes."""
    import jax

    for shape in SHAPES:
        source, _ = build_authors_checkpoint(tmp_path / str(shape[0]), *shape)
        params = read_train_state(source)["params"]
        theirs = {
            "/".join(key.key for key in path): leaf.shape
            for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        }
        arch = infer_architecture(params)
        assert (arch.patch_size, arch.hidden_size, arch.depth, arch.mlp_ratio) == (
            shape[0],
            shape[1],
            shape[2],
            shape[4],
        )
        assert authors_parameter_shapes(arch) == theirs


@pytest.fixture(scope="module")
def conditional(authors_code, tmp_path_factory):
    """The patch-2 conditional checkpoint of SHAPES[0], converted once: (their apply, our LoadedModel)."""
    out = tmp_path_factory.mktemp("authors")
    patch, hidden, depth, heads, mlp_ratio, classes, size = SHAPES[0]
    source, apply = build_authors_checkpoint(out, *SHAPES[0])
    run = convert_jax_checkpoint(source, out / "run", num_heads=heads, data_shape=f"4x{size}x{size}", vae="none")
    return apply, run.run_dir


def test_the_authors_attention_scale_is_needed(conditional):
    """With authors_quirks off (1/sqrt(head_dim) attention) the same weights give another network."""
    patch, hidden, depth, heads, mlp_ratio, classes, size = SHAPES[0]
    apply, run_dir = conditional
    loaded = load_model(run_dir, device="cpu")
    x, t, level, y = inputs(size, classes)
    d = 2.0 ** -level.float()
    theirs = apply("ema", x, t, level, y)
    for block in loaded.model.blocks:
        block.attn.scale = block.attn.head_dim**-0.5  # what authors_quirks=False builds
    with torch.no_grad():
        standard = loaded.model(x, t, d, y)
    assert relative_difference(standard, theirs) > 10 * 1e-4  # ten times the equality tolerance


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("cfg_scale", [1.0, 1.5])
def test_sampling_matches_the_authors_loop(conditional, steps, cfg_scale):
    """Our sampler on converted weights = their inference loop (helper_inference.py): Euler steps of
    1/T from t = 0, the step level log2(T) fed to the network, guidance v_u + w (v_c - v_u)."""
    patch, hidden, depth, heads, mlp_ratio, classes, size = SHAPES[0]
    apply, run_dir = conditional
    loaded = load_model(run_dir, device="cpu")
    n = 4
    labels = torch.arange(n) % classes
    noise = torch.cat([loaded.noise(0, i) for i in range(n)])
    ours = loaded.generate(n, steps, seed=0, labels=labels, cfg_scale=cfg_scale)

    x = noise.clone()
    null = torch.full((n,), classes)
    level = torch.full((n,), int(np.log2(steps)))
    for i in range(steps):
        t = torch.full((n,), i / steps)
        if cfg_scale == 1:
            v = apply("ema", x, t, level, labels)
        else:
            v_uncond, v_cond = apply("ema", x, t, level, null), apply("ema", x, t, level, labels)
            v = v_uncond + cfg_scale * (v_cond - v_uncond)
        x = x + v / steps
    assert relative_difference(ours, x) < 1e-4
