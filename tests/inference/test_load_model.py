"""Self-describing checkpoints: config.json rebuilds the network and its sampler without the data."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from shortcut_models import checkpoints as ckpt
from shortcut_models.cli import main
from shortcut_models.config import build_config
from shortcut_models.errors import UserError
from shortcut_models.inference import load_model
from shortcut_models.training import Trainer

NANO = ["model=DiT-Nano", "batch_size=16", "steps=2", "log_every=1", "logger=none", "sample_steps=[1]"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("digits") / "run"
    Trainer(build_config("digits", None, None, NANO), run, progress=False).run()
    return run


def test_config_json_describes_the_network_and_its_sampler(digits_run):
    config = ckpt.read_config(ckpt.latest_checkpoint(digits_run))
    assert config["format_version"] == ckpt.FORMAT_VERSION and config["step"] == 2
    assert config["network"] == {
        "class": "DiT",
        "args": {
            "input_size": 8,
            "in_channels": 1,
            "patch_size": 2,
            "hidden_size": 64,
            "depth": 2,
            "num_heads": 2,
            "num_classes": 10,
            "mlp_ratio": 4.0,
            "authors_quirks": False,
            "step_input": "level",
        },
    }
    assert (config["sample_shape"], config["data_shape"], config["num_classes"]) == ([1, 8, 8], [1, 8, 8], 10)
    assert (config["objective"], config["sampling_d"], config["autoencoder"], config["data"]) == (
        "shortcut",
        None,
        None,
        "digits",
    )
    assert config["objective_args"]["bootstrap_every"] == 8 and config["objective_args"]["target_network"] == "online"
    assert config["training"]["steps"] == 2 and config["training"]["model"] == "DiT-Nano"


def test_loading_never_touches_the_data(digits_run, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the data was opened")

    for where in (
        "shortcut_models.data.registry.build_source",
        "shortcut_models.data.registry.describe_source",
        "shortcut_models.data.digits.load_digits",
    ):
        monkeypatch.setattr(where, refuse)
    loaded = load_model(digits_run, "cpu")
    x = loaded.generate(4, 2, labels=torch.arange(4))
    assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all()
    assert loaded.label == "shortcut@2" and loaded.objective.sampling_d is None


def test_a_renamed_checkpoint_directory_keeps_its_step(digits_run, tmp_path):
    best = tmp_path / "best"
    shutil.copytree(ckpt.latest_checkpoint(digits_run), best)
    assert load_model(best, "cpu").step == 2


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.pop("network"), "missing network"),
        (lambda c: c.update(network={"class": "os.system", "args": {}}), "needs 'class'"),
        (lambda c: c.update(network={"class": "DiT", "args": {"depth": "x"}}), "bad arguments for DiT"),
        (lambda c: c.update(format_version=99), "format 99, written by a newer shortcut-models"),
        (lambda c: c.pop("training"), "holds no training config"),
        (lambda c: c.update(objective="diffusion"), "objective must be one of"),
    ],
)
def test_a_malformed_config_json_is_one_line(digits_run, tmp_path, edit, message, capsys):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    file = ckpt.latest_checkpoint(run) / ckpt.CONFIG
    config = json.loads(file.read_text())
    edit(config)
    file.write_text(json.dumps(config))
    with pytest.raises(UserError, match=message):
        load_model(run, "cpu")
    assert main(["sample", "--ckpt", str(run), "--steps", "1", "--num", "2", "--out", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow  # a fresh process (the hub reads its offline switch at import)
def test_a_hub_repository_id_loads_from_the_local_hub_cache(digits_run, tmp_path):
    """An uploaded checkpoint directory is a Hugging Face model repository: ``load_model("owner/name")``.

    The command's samples equal this process's bit for bit: the same weights, noise, batch and thread count
    (the child is given this process's, whatever an earlier test left it at), so the same computation on
    the same machine."""
    pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-digits"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(ckpt.latest_checkpoint(digits_run), snapshot, ignore=shutil.ignore_patterns("state.pt"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(tmp_path / "home"),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
    }
    out = tmp_path / "s.npz"
    cmd = [
        sys.executable,
        "-m",
        "shortcut_models",
        "sample",
        "--ckpt",
        "someone/tiny-digits",
        "--steps",
        "2",
        "--num",
        "4",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    local = load_model(digits_run, "cpu").generate(4, 2, labels=torch.arange(4))
    from shortcut_models.images import to_uint8

    assert np.array_equal(np.load(out)["arr_0"], to_uint8(local))
    missing = [*cmd[:5], "someone/absent", *cmd[6:]]
    result = subprocess.run(missing, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert result.returncode == 2 and "someone/absent" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_latent_model_samples_after_its_cache_is_deleted(tiny_latents, vae_dir, tmp_path, capsys):
    """Sampling needs config.json, the weights and the VAE: never the latent cache."""
    _, cache = tiny_latents
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "--quiet",
                f"data=latents:{cache}",
                "eval_every=0",
                "model=DiT-Nano",
                "batch_size=8",
                "steps=2",
                "logger=none",
                "sample_steps=[1]",
                "class_conditional=false",
            ]
        )
        == 0
    )
    config = ckpt.read_config(ckpt.latest_checkpoint(run))
    assert (config["autoencoder"], config["sample_shape"], config["data_shape"]) == (
        str(vae_dir.resolve()),
        [4, 16, 16],
        [3, 32, 32],
    )
    shutil.rmtree(cache)
    out = tmp_path / "s.npz"
    assert main(["sample", "--ckpt", str(run), "--steps", "2", "--num", "3", "--out", str(out)]) == 0, (
        capsys.readouterr().err
    )
    assert np.load(out)["arr_0"].shape == (3, 32, 32, 3)
