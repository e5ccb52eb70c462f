"""The `shortcut` command: end to end on a tiny run, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from shortcut_models import seeding
from shortcut_models.cli import main
from shortcut_models.inference import load_model

TINY = [
    "--preset",
    "checkerboard",
    "steps=6",
    "model_args.width=16",
    "model_args.depth=1",
    "batch_size=16",
    "log_every=3",
    "sample_steps=[1]",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--out", str(out), "--quiet", *TINY]) == 0
    return out


def test_train_writes_checkpoint(run_dir):
    assert (run_dir / "checkpoints" / "step_00000006" / "ema.safetensors").is_file()


def test_sample_npz_and_png(run_dir, tmp_path):
    assert (
        main(["sample", "--ckpt", str(run_dir), "--steps", "3", "--num", "50", "--out", str(tmp_path / "s.npz")]) == 0
    )
    data = np.load(tmp_path / "s.npz")
    assert data["arr_0"].shape == (50, 2) and data["arr_0"].dtype == np.float32
    assert data["labels"].shape == (50,)
    assert (
        main(["sample", "--ckpt", str(run_dir), "--steps", "1", "--num", "50", "--out", str(tmp_path / "s.png")]) == 0
    )
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # deterministic for a seed
    main(["sample", "--ckpt", str(run_dir), "--steps", "3", "--num", "50", "--out", str(tmp_path / "t.npz")])
    assert np.array_equal(np.load(tmp_path / "t.npz")["arr_0"], data["arr_0"])


def test_eval_writes_every_step_count(run_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--ckpt", str(run_dir), "--steps", "1,2,4", "--num", "200", "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert [r["steps"] for r in result["rows"]] == [1, 2, 4]
    assert all(r["swd"] > 0 and r["swd_floor"] > 0 and 0 <= r["in_square"] <= 1 for r in result["rows"])
    assert (out / "metrics.csv").is_file() and (out / "metric_vs_steps.png").read_bytes()[:4] == b"\x89PNG"
    assert "swd_floor" in capsys.readouterr().out


def test_eval_with_the_renoising_sampler(run_dir, tmp_path, capsys):
    """`shortcut eval --sampler renoise`: one step is the same jump as Euler's, two steps re-noise and differ;
    its rows and table say which sampler drew them."""
    argv = ["eval", "--ckpt", str(run_dir), "--steps", "1,2", "--num", "200", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "euler")]) == 0
    assert main([*argv, "--sampler", "renoise", "--out", str(tmp_path / "renoise")]) == 0
    euler, renoise = (json.loads((tmp_path / d / "metrics.json").read_text())["rows"] for d in ("euler", "renoise"))
    assert [r["sampler"] for r in renoise] == ["renoise", "renoise"] and all("sampler" not in r for r in euler)
    assert renoise[0]["swd"] == euler[0]["swd"] and renoise[1]["swd"] != euler[1]["swd"]
    assert "renoise" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--preset", "nope"], "unknown preset"),
        (["train", "no_such_key=3"], "unknown config key"),
        (["train", "steps=-1"], "steps must be a positive integer"),
        (["sample", "--ckpt", "/nonexistent/run", "--steps", "1", "--out", "x.npz"], "no checkpoint found"),
        (["eval", "--ckpt", "/nonexistent/run", "--out", "x"], "no checkpoint found"),
        (["eval", "--ckpt", "x", "--steps", "0,1", "--out", "x"], "integer from 1 to 128"),
        (["eval", "--ckpt", "x", "--sampler", "heun", "--out", "x"], "invalid choice"),
        (["train", "--objective", "diffusion"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_sample_with_the_renoising_sampler(run_dir, tmp_path):
    """`--sampler renoise`: jump to the data end, re-noise sample i with its own fresh noise at t = 0.5 (the
    default, or --renoise-at), jump again; the default sampler is unchanged."""
    argv = ["sample", "--ckpt", str(run_dir), "--steps", "2", "--num", "20", "--seed", "3"]
    assert main([*argv, "--sampler", "renoise", "--out", str(tmp_path / "r.npz")]) == 0
    assert main([*argv, "--sampler", "renoise", "--renoise-at", "0.25", "--out", str(tmp_path / "q.npz")]) == 0
    assert main([*argv, "--out", str(tmp_path / "e.npz")]) == 0
    loaded = load_model(run_dir, "cpu")
    shape, null = loaded.spec.sample_shape, torch.full((20,), loaded.num_classes)
    noise = torch.cat([seeding.sample_noise(3, i, shape) for i in range(20)])
    fresh = torch.cat([seeding.renoise_noise(3, i, 1, shape) for i in range(20)])

    def u(x, t):
        with torch.no_grad():
            return loaded.model(x, torch.full((20,), t), torch.full((20,), 1 - t), null)

    x1 = noise + u(noise, 0.0)
    for at, file in ((0.5, "r.npz"), (0.25, "q.npz")):
        x = (1 - (1 - 1e-5) * at) * fresh + at * x1
        np.testing.assert_allclose(np.load(tmp_path / file)["arr_0"], (x + (1 - at) * u(x, at)).numpy(), atol=1e-5)
    euler = torch.from_numpy(np.load(tmp_path / "e.npz")["arr_0"])
    torch.testing.assert_close(euler, loaded.generate(20, 2, seed=3), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--renoise-at", "0.5"], "--renoise-at needs --sampler renoise"),
        (["--sampler", "renoise", "--renoise-at", "0.3,0.6"], "2 step(s) re-noise at 1 time(s)"),
        (["--sampler", "renoise", "--renoise-at", "1.5"], "increase within (0, 1)"),
        (["--sampler", "renoise", "--renoise-at", "nan"], "increase within (0, 1)"),
        (["--sampler", "renoise", "--renoise-at", "half"], "'half' is not a time"),
        (["--sampler", "heun"], "invalid choice"),
    ],
)
def test_bad_renoising_options_exit_2_with_one_line(run_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "x.npz"
    assert main(["sample", "--ckpt", str(run_dir), "--steps", "2", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert not out.exists()


def test_bad_steps_for_sample(run_dir, capsys):
    assert main(["sample", "--ckpt", str(run_dir), "--steps", "200", "--out", "x.npz"]) == 2
    assert "integer from 1 to 128" in capsys.readouterr().err


def test_console_script_and_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "shortcut_models", "train", "--preset", "nope"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]


def test_config_files_json_and_toml(tmp_path):
    from shortcut_models.config import build_config
    from shortcut_models.errors import UserError

    (tmp_path / "c.json").write_text('{"steps": 7, "model_args": {"width": 8}}')
    (tmp_path / "c.toml").write_text("steps = 9\nlr = 0.002\n")
    (tmp_path / "bad.json").write_text("{not json")
    assert build_config("checkerboard", None, str(tmp_path / "c.json"), []).model_args == {"width": 8}
    cfg = build_config("checkerboard", None, str(tmp_path / "c.toml"), ["steps=11"])
    assert (cfg.steps, cfg.lr) == (11, 0.002)  # key=value overrides win over the file
    with pytest.raises(UserError, match="cannot parse config file"):
        build_config("checkerboard", None, str(tmp_path / "bad.json"), [])
    with pytest.raises(UserError, match="config file not found"):
        build_config("checkerboard", None, str(tmp_path / "none.json"), [])
