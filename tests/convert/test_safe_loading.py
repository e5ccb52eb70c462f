"""Checkpoints from the internet are read without running code from them; bad input is one line, exit 2."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from shortcut_models.cli import main
from shortcut_models.convert import AuthorsArchitecture, authors_parameter_shapes, convert_jax_checkpoint, nest
from shortcut_models.errors import UserError
from shortcut_models.inference import load_model
from shortcut_models.safe_pickle import InertState, UnsafePickleError, load_array_tree


class _Payload:
    """Unpickling this calls os.system (the attack the allow-list refuses)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_call_os_system_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = {"train_state": {"params": {"w": np.zeros(3)}, "step": _Payload(marker)}, "_timestamp": 0.0}
    source = tmp_path / "evil.pkl"
    source.write_bytes(pickle.dumps(payload))
    assert main(["convert", "--from-jax", str(source), "--preset", "DiT-B/2", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused to load posix.system" in err[0] and "Traceback" not in err[0]
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_the_refusal_happens_in_a_real_process_too(tmp_path):
    """The command line, as a user runs it: exit 2, one line, no file created by the payload."""
    marker = tmp_path / "pwned"
    source = tmp_path / "evil.pkl"
    source.write_bytes(pickle.dumps({"train_state": _Payload(marker)}))
    proc = subprocess.run(
        [sys.executable, "-m", "shortcut_models", "convert", "--from-jax", str(source), "--preset", "DiT-B/2"]
        + ["--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "posix.system" in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "attack",
    [
        pickle.dumps(os.getcwd),  # any function outside the list
        b"cbuiltins\neval\n(S'1+1'\ntR.",  # builtins.eval by hand
        pickle.dumps(np.array([{"a": 1}], dtype=object)),  # an object array (its elements could be anything)
    ],
    ids=["function", "eval", "object-array"],
)
def test_other_globals_and_object_arrays_are_refused(attack):
    with pytest.raises(UnsafePickleError):
        load_array_tree(attack)


def test_arrays_containers_and_optimizer_states_load_as_plain_values():
    tree = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": [np.float64(2.5), (np.int32(3), "text")],
        "c": {"nested": np.ones((2, 2), dtype=np.float16)},
    }
    for protocol in (2, 4, 5):
        loaded = load_array_tree(pickle.dumps(tree, protocol=protocol))
        np.testing.assert_array_equal(loaded["a"], tree["a"])
        assert loaded["a"].dtype == np.float32 and loaded["c"]["nested"].dtype == np.float16
        assert loaded["b"][0] == 2.5 and loaded["b"][1] == (3, "text")
    optax = pytest.importorskip("optax")
    state = optax.adamw(1e-3).init({"w": np.ones(3, np.float32)})
    loaded = load_array_tree(pickle.dumps(state))
    adam = loaded[0]
    assert isinstance(adam, InertState) and adam.state_name == "ScaleByAdamState"
    np.testing.assert_array_equal(np.asarray(adam[1]["w"]), np.zeros(3))  # mu of the Adam state


def test_jax_arrays_load_as_numpy():
    jnp = pytest.importorskip("jax.numpy")
    loaded = load_array_tree(pickle.dumps({"x": jnp.arange(4.0)}))
    assert isinstance(loaded["x"], np.ndarray) and loaded["x"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_file_that_is_no_pickle_is_one_line(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(UserError, match="not a readable pickle"):
        load_array_tree(bad)


def authors_tree(rng, hidden=32, depth=2, patch=2, channels=4, rows=3, mlp=4):
    """A parameter tree with the authors' names and shapes, random values, built with numpy alone (no JAX)."""
    arch = AuthorsArchitecture(hidden, depth, patch, channels, float(mlp), max(rows - 1, 0), rows)
    shapes = authors_parameter_shapes(arch)
    return nest({path: rng.normal(0, 0.05, shape).astype(np.float32) for path, shape in shapes.items()})


def write_authors_pickle(path, rng, **shape):
    state = {"params": authors_tree(rng, **shape), "params_ema": authors_tree(rng, **shape), "opt_state": (), "step": 7}
    path.write_bytes(pickle.dumps({"train_state": state, "_timestamp": 0.0}))
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "DiT-B/2"], "--preset DiT-B/2 has hidden_size 768, the checkpoint 32"),
        ([], "give --preset (e.g. DiT-B/2) or --num-heads"),
        (["--preset", "DiT-Q/7"], "unknown --preset 'DiT-Q/7'"),
        (["--num-heads", "2", "--data-shape", "3x8x8"], "has 3 channels, the checkpoint 4"),
        (["--num-heads", "2", "--data-shape", "4x9x9"], "not a multiple of the patch size 2"),
        (["--num-heads", "2", "--data-shape", "4x8"], "--data-shape must look like 4x32x32"),
        (["--num-heads", "3"], "hidden_size 32 is not divisible by num_heads 3"),
    ],
)
def test_a_size_that_disagrees_with_the_checkpoint_is_one_line(tmp_path, capsys, args, message):
    source = write_authors_pickle(tmp_path / "ckpt.pkl", np.random.default_rng(0))
    rc = main(["convert", "--from-jax", str(source), "--out", str(tmp_path / "run"), "--vae", "none", *args])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err


def test_converting_into_a_run_that_has_checkpoints_is_refused(tmp_path, capsys):
    source = write_authors_pickle(tmp_path / "ckpt.pkl", np.random.default_rng(0))
    args = ["convert", "--from-jax", str(source), "--num-heads", "2", "--data-shape", "4x8x8", "--vae", "none"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err


def test_a_converted_run_samples_through_a_vae_and_seeds_a_fine_tuning_run(tmp_path, vae_dir, capsys):
    """`shortcut sample --steps 1` on a converted latent model (tiny random VAE), then `--init-from` it."""
    source = write_authors_pickle(tmp_path / "ckpt.pkl", np.random.default_rng(0), rows=2)  # unconditional
    run = tmp_path / "run"
    rc = main(
        ["convert", "--from-jax", str(source), "--num-heads", "2", "--data-shape", "4x8x8", "--vae", str(vae_dir)]
        + ["--data", "synthetic:4x8x8", "--out", str(run), "--quiet"]
    )
    assert rc == 0
    loaded = load_model(run, device="cpu")
    assert loaded.spec.autoencoder == str(vae_dir) and loaded.spec.scaling_factor == 0.18215
    assert loaded.data_shape == (3, 16, 16) and loaded.num_classes == 0
    # the authors' network feeds -log2 d: recorded, and the fine-tuning command below carries it
    assert loaded.spec.network["args"]["step_input"] == loaded.training["model_args"]["step_input"] == "level"
    assert main(["sample", "--ckpt", str(run), "--steps", "1", "--num", "4", "--out", str(tmp_path / "s.npz")]) == 0
    images = np.load(tmp_path / "s.npz")["arr_0"]
    assert images.shape == (4, 16, 16, 3) and images.std() > 0
    # one training step of a new run that starts from the converted weights
    printed = capsys.readouterr().out
    command = next(line for line in printed.splitlines() if line.startswith("fine-tune:")).split()[3:]
    assert command[:4] == ["--preset", "celebahq256", "--init-from", str(run)]
    model_args = command[5].strip("'")
    assert '"step_input":"level"' in model_args
    rc = main(
        ["train", "--out", str(tmp_path / "ft"), "--quiet", *command[:5], model_args, "data=synthetic:4x8x8"]
        + ["steps=1", "batch_size=8", "eval_every=0", "sample_every=0", "ckpt_every=1", "precision=fp32"]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "initialised from" in err


def test_conversion_keeps_every_value(tmp_path):
    """Weights in model.safetensors are the authors' arrays, rearranged, bit for bit."""
    rng = np.random.default_rng(1)
    source = write_authors_pickle(tmp_path / "ckpt.pkl", rng)
    tree = load_array_tree(source)["train_state"]
    run = convert_jax_checkpoint(source, tmp_path / "run", num_heads=2, data_shape="4x8x8", vae="none")
    from safetensors.torch import load_file

    online, ema = load_file(run.checkpoint / "model.safetensors"), load_file(run.checkpoint / "ema.safetensors")
    params, params_ema = tree["params"], tree["params_ema"]
    q, k, v = (params["DiTBlock_1"][f"Dense_{j}"]["kernel"].T for j in (2, 1, 3))
    assert torch.equal(online["blocks.1.attn.qkv.weight"], torch.from_numpy(np.concatenate([q, k, v])))
    conv = params_ema["PatchEmbed_0"]["Conv_0"]["kernel"]  # [p, p, in, out] -> [out, in, p, p]
    assert torch.equal(ema["x_embedder.weight"], torch.from_numpy(conv.transpose(3, 2, 0, 1).copy()))
    assert torch.equal(
        ema["conditioning.y_embedder.table.weight"],
        torch.from_numpy(params_ema["LabelEmbedder_0"]["Embed_0"]["embedding"]),
    )
    assert run.step == 7 and run.architecture.num_classes == 2 and run.architecture.mlp_ratio == 4.0


def test_a_converted_run_is_not_resumed(tmp_path, capsys):
    """It holds weights only: `train --out` on it says to start a new run from it instead of crashing."""
    source = write_authors_pickle(tmp_path / "ckpt.pkl", np.random.default_rng(0), rows=2)
    run = tmp_path / "run"
    args = ["--num-heads", "2", "--data-shape", "4x8x8", "--vae", "none", "--data", "synthetic:4x8x8"]
    assert main(["convert", "--from-jax", str(source), *args, "--out", str(run), "--quiet"]) == 0
    model_args = '{"patch_size":2,"hidden_size":32,"depth":2,"num_heads":2,"authors_quirks":true}'
    rc = main(
        ["train", "--preset", "celebahq256", "--out", str(run), "--quiet", "data=synthetic:4x8x8"]
        + [f"model_args={model_args}", "eval_every=0", "steps=10"]
    )
    assert (
        rc == 2 and "no training state to resume; start a new run from it with --init-from" in capsys.readouterr().err
    )
