"""Every bad value a hostile user tried: one line on stderr naming the key, exit code 2, before any work.

Work is made impossible here: loading a checkpoint, an autoencoder or the Inception network fails
the test, so a value that slips through the checks cannot pass by failing later for another reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shortcut_models import cli

TRAIN = [  # key=value overrides of `shortcut train` -> the key the error must name
    (["ema_decay=abc"], "ema_decay"),
    (["class_dropout=abc"], "class_dropout"),
    (["beta1=2"], "beta1"),
    (["weight_decay=-1"], "weight_decay"),
    (["warmup_steps=abc"], "warmup_steps"),
    (["warmup_steps=-5"], "warmup_steps"),
    (["grad_clip=abc"], "grad_clip"),
    (["grad_clip=-1"], "grad_clip"),
    (["grad_clip=nan"], "grad_clip"),
    (["seed=abc"], "seed"),
    (["seed=1.5"], "seed"),
    ([f"seed={2**32}"], "seed"),  # would alias seed 0
    (["seed=-1"], "seed"),
    (["max_steps=3"], "max_steps"),  # an objective knob: a power of two
    (["bootstrap_cfg=true", "cfg_scale=abc"], "cfg_scale"),
    (["target_network=maybe"], "target_network"),
    (["compile=abc"], "compile"),
    (["dt_bias=abc"], "dt_bias"),
    (["preset=whatever"], "preset"),
    (["sample_steps=[0]"], "sample_steps"),
    (["sample_steps=[200]"], "sample_steps"),
    (["sample_cfg_scale=abc"], "sample_cfg_scale"),
    (["lr=1e39"], "lr"),
    (["lr=1e6"], "lr"),
    (["lr=0.5", "weight_decay=10"], "weight_decay"),
    (["lr_schedule=bogus"], "lr_schedule"),
    (["optimizer=adamax"], "optimizer"),
    (["optimizer=sgd", "momentum=abc"], "momentum"),
    (["lr_schedule=cosine", "lr_min=1"], "lr_min"),
    (["lr_schedule=wsd", "decay_share=-0.2"], "decay_share"),
    (["device=meta"], "device"),
    (["batch_size=100000000"], "grad_accum"),  # measured memory: refused before the first step, naming the remedy
    (["max_steps=3", "--quiet"], "max_steps"),  # an override after an option is an override
    (["no_such_key=3"], "unknown config key"),
]


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    """Fail the test if a command gets as far as loading a model, an autoencoder or Inception."""
    from shortcut_models.cli import encode, evaluate, ref_stats, sample
    from shortcut_models.evaluation import image_metrics

    def work(*args, **kwargs):
        raise AssertionError("the command started working on bad input")

    for module, name in [
        (sample, "load_model"),
        (evaluate, "load_model"),
        (encode, "build_autoencoder"),
        (ref_stats, "feature_extractor"),
        (ref_stats, "load_digits"),
        (image_metrics, "fid_extractor"),
        (image_metrics, "dinov2_extractor"),
    ]:
        monkeypatch.setattr(module, name, work)


def _one_line_naming(capsys, key: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("overrides, key", TRAIN, ids=[" ".join(o) for o, _ in TRAIN])
def test_bad_training_values(overrides, key, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--out", str(run), *overrides]) == 2
    _one_line_naming(capsys, key)
    assert not (run / "checkpoints").exists() and not (run / "metrics.csv").exists()


@pytest.mark.parametrize("content", [b"[1, 2]", b'"a string"', bytes(range(256))], ids=["list", "string", "binary"])
def test_a_config_file_that_is_not_a_table(content, tmp_path, capsys):
    (tmp_path / "c.json").write_bytes(content)
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--config", str(tmp_path / "c.json")]) == 2
    _one_line_naming(capsys, "config file")


SAMPLE = ["sample", "--ckpt", "RUN", "--steps", "1"]
EVAL = ["eval", "--ckpt", "RUN"]
ENCODE = ["encode", "--data", "IMAGES", "--vae", "identity"]
REF_STATS = ["ref-stats", "--data", "digits"]
OPTIONS = [  # argv (OUT: a fresh path) -> the option the error must name
    ([*ENCODE, "--out", "OUT", "--workers", "-1"], "--workers"),
    ([*ENCODE, "--out", "OUT", "--workers", "0"], "--workers"),
    ([*ENCODE, "--out", "OUT", "--batch-size", "0"], "--batch-size"),
    ([*ENCODE, "--out", "OUT", "--resolution", "100000"], "--resolution"),
    ([*SAMPLE, "--out", "OUT.npz", "--device", "meta"], "--device"),
    ([*SAMPLE, "--out", "OUT.npz", "--num", "0"], "--num"),
    ([*SAMPLE, "--out", "OUT.npz", "--seed", str(2**32)], "--seed"),
    ([*SAMPLE, "--out", "OUT.npz", "--cfg-scale", "nan"], "--cfg-scale"),
    ([*EVAL, "--out", "OUT", "--device", "meta"], "--device"),
    ([*ENCODE, "--out", "OUT", "--device", "meta"], "--device"),
    ([*REF_STATS, "--out", "OUT.npz", "--device", "meta"], "--device"),
    ([*EVAL, "--out", "OUT", "--batch-size", "0"], "--batch-size"),
    ([*EVAL, "--out", "OUT", "--num", "1"], "--num"),
    ([*EVAL, "--out", "OUT", "--steps", ""], "--steps"),
    ([*EVAL, "--out", "OUT", "--seed", "abc"], "--seed"),
    ([*REF_STATS, "--out", "OUT.npz", "--num", "1"], "--num"),
    (["ref-stats", "--data", "nope", "--out", "OUT.npz"], "'nope'"),  # no download before the folder check
    (["train", "--out", ""], "--out"),
    ([*SAMPLE, "--out", ""], "--out"),
    ([*EVAL, "--out", ""], "--out"),
    ([*ENCODE, "--out", ""], "--out"),
    ([*REF_STATS, "--out", ""], "--out"),
    (["demo", "--out", ""], "--out"),
    (["study", "--out", ""], "--out"),
]


def _fill(argv: list[str], tmp_path: Path, out: str = "OUT") -> list[str]:
    """Placeholders -> paths: RUN (absent), IMAGES (an empty folder), OUT (the output path to test)."""
    (tmp_path / "images").mkdir(exist_ok=True)
    names = {"RUN": str(tmp_path / "run"), "IMAGES": str(tmp_path / "images")}
    filled = []
    for a in argv:
        if a.startswith("OUT"):
            a = out + a[3:] if out != "OUT" else str(tmp_path / "new" / a)
        filled.append(names.get(a, a))
    return filled


@pytest.mark.parametrize("argv, key", OPTIONS, ids=[" ".join(a) for a, _ in OPTIONS])
def test_bad_options(argv, key, tmp_path, capsys):
    assert cli.main(_fill(argv, tmp_path)) == 2
    _one_line_naming(capsys, key)
    assert not (tmp_path / "new").exists()


COMMANDS = {  # each command with an output path: (argv with OUT, the output is a directory)
    "train": (["train", "--out", "OUT"], True),
    "sample": ([*SAMPLE, "--out", "OUT"], False),
    "eval": ([*EVAL, "--out", "OUT"], True),
    "encode": ([*ENCODE, "--out", "OUT"], True),
    "ref-stats": ([*REF_STATS, "--out", "OUT"], False),
}


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """A directory this process cannot write into (root ignores permission bits: then a system one)."""
    if os.geteuid() != 0:
        tmp_path.joinpath("ro").mkdir()
        tmp_path.joinpath("ro").chmod(0o555)
        return tmp_path / "ro"
    for candidate in ("/proc/sys", "/sys/kernel"):
        if os.path.isdir(candidate) and not os.access(candidate, os.W_OK):
            return Path(candidate)
    pytest.skip("no read-only directory available to this (root) process")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_output_that_cannot_be_written(command, read_only_dir, tmp_path, capsys):
    argv, is_dir = COMMANDS[command]
    out = read_only_dir / ("run" if is_dir else "out.npz")
    assert cli.main(_fill(argv, tmp_path, str(out))) == 2
    assert "cannot be written" in _one_line_naming(capsys, "--out")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_output_that_names_an_existing_file(command, tmp_path, capsys):
    argv, is_dir = COMMANDS[command]
    (tmp_path / "file").write_text("keep me")
    out = tmp_path / "file" if is_dir else tmp_path / "file" / "out.npz"  # a directory at a file; a file below one
    assert cli.main(_fill(argv, tmp_path, str(out))) == 2
    assert "file" in _one_line_naming(capsys, "--out")
    assert (tmp_path / "file").read_text() == "keep me"


def test_overrides_may_follow_options(monkeypatch, tmp_path):
    """`--out X steps=5 --objective flow lr=0.01`: every key=value is an override, wherever it stands."""
    seen = {}

    def build_trainer(cfg, out, progress):
        seen.update(cfg=cfg, out=out)
        raise SystemExit(0)

    monkeypatch.setattr(cli.train, "build_trainer", build_trainer)
    argv = ["train", "--out", str(tmp_path / "x"), "steps=5", "--objective", "flow", "lr=0.01", "--quiet", "seed=3"]
    with pytest.raises(SystemExit):
        cli.main(argv)
    cfg = seen["cfg"]
    assert (cfg.steps, cfg.objective, cfg.lr, cfg.seed) == (5, "flow", 0.01, 3) and seen["out"] == tmp_path / "x"


def test_an_unknown_option_is_still_refused(capsys):
    assert cli.main(["train", "steps=5", "--bogus", "1"]) == 2
    _one_line_naming(capsys, "--bogus")


def test_a_preset_key_picks_the_preset(monkeypatch, tmp_path):
    """`preset=moons` selects the preset like --preset (it used to rename the digits defaults)."""
    from shortcut_models.config import build_config

    assert build_config(None, None, None, ["preset=moons"]) == build_config("moons")
    assert build_config("digits", None, None, ["preset=moons", "steps=7"]).steps == 7


def test_a_gpu_index_beyond_the_machine(monkeypatch):
    import torch

    from shortcut_models import distributed
    from shortcut_models.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UserError, match="'cuda:2' requested but this machine has 2 GPU"):
        distributed.resolve_device("cuda:2")
