"""Every bad value a hostile user tried: one line on stderr naming the key, exit code 2, before any work.

Work is made impossible here: loading a checkpoint, an autoencoder or the Inception network fails
the test, so a value that slips through the checks cannot pass by failing later for another reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shortcut_models import cli
from shortcut_models.evaluation.image_metrics import fid_extractor as REAL_FID_EXTRACTOR  # before no_work
from shortcut_models.inference import load_model as REAL_LOAD_MODEL

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
    (["model_args.width=abc"], "model_args"),  # the network's own settings: checked before any work too
    (["model_args.nosuch=3"], "nosuch"),
    (["--preset", "checkerboard", "model_args.width=abc"], "model_args"),
]
TRAIN_ONLY = {"batch_size=100000000", "--quiet"}  # a measured memory limit; an option `config` does not take


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    """Fail the test if a command gets as far as loading a model, an autoencoder or Inception, or training."""
    from shortcut_models.cli import encode, evaluate, ref_stats, sample
    from shortcut_models.evaluation import image_metrics
    from shortcut_models.training import Trainer

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
        (Trainer, "run"),
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


@pytest.mark.parametrize(
    "overrides, key",
    [(o, k) for o, k in TRAIN if not TRAIN_ONLY & set(o)],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_config_refuses_what_train_refuses(overrides, key, capsys):
    """`shortcut config` makes the checks of `shortcut train` (one function for both): no config printed."""
    assert cli.main(["config", *overrides]) == 2
    _one_line_naming(capsys, key)
    assert capsys.readouterr().out == ""


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
    ([*REF_STATS, "--out", "OUT.txt"], "--out must end in .npz"),  # the file is a .npz whatever its name
    (["demo", "--quick", "--out", "OUT", "nosuch=3"], "nosuch"),  # refused before plan.json and .lock
    (["study", "--quick", "--out", "OUT", "nosuch=3"], "nosuch"),
    (["study", "--quick", "--out", "OUT", "model_args.nosuch=3"], "nosuch"),
    (["demo", "--quick", "--out", "OUT", "model_args.width=abc"], "model_args"),
    (["demo", "--quick", "--conditional-ckpt", "RUN", "--out", "OUT"], "--conditional-ckpt"),  # before training
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


def test_fid_without_the_network_is_one_line_naming_the_weights_option(monkeypatch, tmp_path, capsys):
    """No internet (the download made to raise as urllib does offline): one line naming --inception-weights,
    exit 2, before the images are loaded (load_digits still fails the test)."""
    import urllib.error

    from shortcut_models.cli import ref_stats
    from shortcut_models.evaluation import image_metrics
    from shortcut_models.metrics import inception

    def offline(url, target):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(inception, "download_weights", offline)
    monkeypatch.setattr(inception, "inception_weights_cache", lambda: tmp_path / "cache" / "weights.pth")
    monkeypatch.setattr(ref_stats, "feature_extractor", image_metrics.feature_extractor)  # the real ones
    monkeypatch.setattr(image_metrics, "fid_extractor", REAL_FID_EXTRACTOR)
    argv = ["ref-stats", "--data", "digits", "--metric", "fid", "--out", str(tmp_path / "new" / "r.npz")]
    assert cli.main(argv) == 2
    err = _one_line_naming(capsys, "--inception-weights")
    assert "Temporary failure in name resolution" in err and "eval_inception_weights" in err
    assert not (tmp_path / "new").exists() and not (tmp_path / "cache").exists()


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    """A tiny trained 2-D run (checkerboard), and a copy of its checkpoint whose config.json names a VAE."""
    import json
    import shutil

    root = tmp_path_factory.mktemp("toy")
    tiny = ["steps=2", "model_args.width=16", "model_args.depth=1", "batch_size=16", "logger=none", "eval_every=0"]
    assert cli.main(["train", "--preset", "checkerboard", "--out", str(root / "run"), "--quiet", *tiny]) == 0
    shutil.copytree(next((root / "run" / "checkpoints").iterdir()), root / "with-vae")
    config = json.loads((root / "with-vae" / "config.json").read_text())
    (root / "with-vae" / "config.json").write_text(json.dumps({**config, "autoencoder": "os.system"}))
    return root


WITH_A_RUN = [  # argv (TOY: a trained 2-D run, TOY_VAE: its checkpoint naming a VAE; OUT: a fresh path) -> key
    (["eval", "--ckpt", "TOY", "--save-samples", "--out", "OUT"], "--save-samples keeps image samples"),
    (["demo", "--quick", "--conditional-ckpt", "TOY", "--out", "OUT"], "not a class-conditional digits checkpoint"),
    (["sample", "--ckpt", "TOY_VAE", "--steps", "1", "--out", "OUT.npz"], "a VAE decodes image latents"),
    (["eval", "--ckpt", "TOY_VAE", "--out", "OUT"], "a VAE decodes image latents"),
]


@pytest.mark.parametrize("argv, key", WITH_A_RUN, ids=[" ".join(a) for a, _ in WITH_A_RUN])
def test_inputs_that_do_not_fit_the_checkpoint(argv, key, toy_run, tmp_path, monkeypatch, capsys):
    """Refused once the checkpoint is read, before any sampling, training or look-up of a VAE (on the disk
    or the Hugging Face hub)."""
    from shortcut_models import autoencoders
    from shortcut_models.cli import evaluate, sample

    monkeypatch.setattr(sample, "load_model", REAL_LOAD_MODEL)
    monkeypatch.setattr(evaluate, "load_model", REAL_LOAD_MODEL)

    def hub(*args, **kwargs):
        raise AssertionError("a VAE was looked for")

    monkeypatch.setattr(autoencoders.StableDiffusionVAE, "_load", hub)
    names = {"TOY": str(toy_run / "run"), "TOY_VAE": str(toy_run / "with-vae")}
    argv = [names.get(a, str(tmp_path / "new" / a) if a.startswith("OUT") else a) for a in argv]
    assert cli.main(argv) == 2
    _one_line_naming(capsys, key)
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())  # nothing written
