"""Fine-tuning from a checkpoint (init_from): weights kept, checks on the source, zero d embedder, resume."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from shortcut_models import checkpoints as ckpt
from shortcut_models.cli import main
from shortcut_models.config import build_config
from shortcut_models.errors import UserError
from shortcut_models.inference import load_model
from shortcut_models.models.mlp import MLP
from shortcut_models.sampling import sample
from shortcut_models.training import Trainer
from shortcut_models.training.init_from import (
    d_embedder_keys,
    guidance_embedder_keys,
    load_network,
    zero_last_linear,
)

TOY = ["model_args.width=32", "model_args.depth=1", "batch_size=16", "log_every=2", "logger=none", "sample_steps=[1]"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def config(nano_config):
    """``config(kind="dit", *extra, objective="shortcut")``: the tiny digits DiT-Nano run ("dit", NANO of
    tests/fixtures/runs.py) or a tiny checkerboard MLP run ("mlp", TOY)."""

    def build(kind="dit", *extra, objective="shortcut"):
        if kind == "dit":
            return nano_config(*extra, objective=objective)
        return build_config("checkerboard", objective, None, [*TOY, *extra])

    return build


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory, config):
    """A class-conditional digits flow-matching run of 3 steps (the fine-tuning source)."""
    out = tmp_path_factory.mktemp("flow")
    Trainer(config("dit", "steps=3", objective="flow"), out, progress=False).run()
    return out


def digits_noise(n=6):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 10


def test_init_keeps_weights_and_the_128_step_output(flow_run, tmp_path, capsys, config):
    """The fine-tuning run starts from the source's weights bit for bit, so its 128-step samples are the
    source's: the same network, weights and noise computed in this process (exact on any machine)."""
    source_ckpt = ckpt.latest_checkpoint(flow_run)
    tuned = Trainer(config("dit", "steps=4", f"init_from={flow_run}"), tmp_path, progress=False)
    err = capsys.readouterr().err
    assert err == f"initialised from {source_ckpt} (step 3, objective flow)\n"
    assert tuned.step == 0 and not tuned.optimizer.state and tuned.ema.num_updates == 0
    assert tuned.init_source.added_d_embedders == ()
    for module, file in ((tuned.model, "model.safetensors"), (tuned.ema.module, "ema.safetensors")):
        saved = load_file(str(source_ckpt / file))
        mine = module.state_dict()
        assert saved.keys() == mine.keys()
        for k in saved:
            assert torch.equal(saved[k], mine[k]), (file, k)
    source = load_model(flow_run, "cpu")
    noise, y = digits_noise()
    with torch.no_grad():
        want = sample(source.model, noise, 128, y=y, fixed_d=1 / 128)
        got = sample(tuned.ema.module, noise, 128, y=y, fixed_d=1 / 128)
    assert torch.equal(got, want) and not torch.equal(want, noise)


def test_fine_tuning_runs_and_changes_the_one_step_output(flow_run, tmp_path, config):
    tuned = Trainer(config("dit", "steps=3", f"init_from={flow_run}"), tmp_path, progress=False)
    noise, y = digits_noise()
    with torch.no_grad():
        before = sample(tuned.ema.module, noise, 1, y=y)
    final = tuned.run()
    with torch.no_grad():
        after = sample(tuned.ema.module, noise, 1, y=y)
    assert torch.isfinite(after).all() and not torch.allclose(before, after)
    saved = json.loads((final / "config.json").read_text())["training"]
    assert saved["init_from"] == str(flow_run) and saved["objective"] == "shortcut"


def test_cli_flag_sets_init_from(flow_run, tmp_path, capsys, nano_args):
    out = tmp_path / "ft"
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                "--quiet",
                "--objective",
                "shortcut",
                "--init-from",
                str(flow_run),
                *nano_args,
                "steps=1",
            ]
        )
        == 0
    )
    assert f"initialised from {ckpt.latest_checkpoint(flow_run)} (step 3, objective flow)" in capsys.readouterr().err
    saved = ckpt.training_config(ckpt.read_config(ckpt.latest_checkpoint(out)))
    assert saved["init_from"] == str(flow_run) and saved["objective"] == "shortcut"


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, config):
    out = tmp_path_factory.mktemp("toy")
    Trainer(config("mlp", "steps=2", objective="flow"), out, progress=False).run()
    return out


@pytest.mark.parametrize(
    "case, key",
    [
        ("hidden_size", "model_args"),
        ("data", "data"),
        ("class_conditional", "class_conditional"),
        ("missing", "no checkpoint found"),
    ],
)
def test_mismatched_or_missing_source_is_refused_in_one_line(flow_run, toy_run, tmp_path, capsys, case, key, nano_args):
    args = ["train", "--out", str(tmp_path / "ft"), "--quiet", "--objective", "shortcut"]
    source = {"data": toy_run, "missing": tmp_path / "nowhere"}.get(case, flow_run)
    extra = {"hidden_size": ["model_args.hidden_size=32"], "class_conditional": ["--preset", "digits-uncond"]}.get(
        case, []
    )
    assert main([*args, "--init-from", str(source), *extra, *nano_args, "steps=2"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], lines
    if case != "missing":
        assert f"different {key} (" in lines[0]
    assert ckpt.latest_checkpoint(tmp_path / "ft") is None


def test_init_from_must_be_a_path(config):
    with pytest.raises(UserError, match="init_from must be"):
        config("dit", "init_from=5")


@pytest.mark.parametrize("kind", ["dit", "mlp"])
def test_source_without_step_size_embedding_gets_a_zero_one(tmp_path, kind, config):
    """The added step-size embedder starts with a zero last layer: its output is exactly zero (as that of the
    source's zeroed one), and adding an exact zero changes no float, so both networks' outputs are
    bit-identical on any machine; one training step then moves the zero layer."""
    src_dir = tmp_path / "src"
    src = Trainer(config(kind, "steps=2", objective="flow"), src_dir, progress=False)
    src.run()
    # the source network: d embedder's last layer zero, saved without any d_embedder entry
    (name,) = d_embedder_keys(src.model)
    for module in (src.model, src.ema.module):
        zero_last_linear(dict(module.named_modules())[name])
    saved = src.save()
    for file in ("model.safetensors", "ema.safetensors"):
        state = load_file(str(saved / file))
        save_file({k: v for k, v in state.items() if f"{name}." not in k}, str(saved / file))

    tuned = Trainer(config(kind, "steps=2", f"init_from={src_dir}"), tmp_path / "ft", progress=False)
    assert tuned.init_source.added_d_embedders == (name,)
    n = 5
    shape = (n, 1, 8, 8) if kind == "dit" else (n, 2)
    x, t = torch.randn(*shape), torch.rand(n)
    y = torch.arange(n) % 10 if kind == "dit" else torch.zeros(n, dtype=torch.long)
    with torch.no_grad():
        for k in range(8):
            d = torch.full((n,), 2.0**-k)
            for a, b in ((src.model, tuned.model), (src.ema.module, tuned.ema.module)):
                assert torch.equal(a(x, t, d, y), b(x, t, d, y)), k
    last = dict(tuned.model.named_modules())[name].mlp[-1]
    first = dict(tuned.model.named_modules())[name].mlp[0]
    assert not last.weight.any() and not last.bias.any() and first.weight.any()
    tuned.train_step(0)  # gradients reach the zeroed layer
    assert last.weight.any() and last.bias.any()


def test_a_source_without_the_guidance_input_fine_tunes_into_imf(flow_run, tmp_path, capsys, config):
    """iMF's network takes the guidance as an input that a flow-matching network lacks: it starts at zero,
    so the fine-tuned network equals its source at every guidance (its output is an exact zero, and adding an
    exact zero changes no float: bit-identical on any machine), and training moves it."""
    tuned = Trainer(config("dit", "steps=2", f"init_from={flow_run}", objective="imf"), tmp_path, progress=False)
    assert capsys.readouterr().err.endswith("no guidance input there: added one that starts at zero\n")
    names = tuned.init_source.added_guidance
    assert len(names) == 3 and set(names) == set(guidance_embedder_keys(tuned.model))
    src = load_model(flow_run, "cpu").model
    x, y = digits_noise()
    t, d = torch.rand(len(y)), torch.full((len(y),), 0.25)
    guidance = torch.tensor([[1.0, 0.0, 1.0], [2.0, 0.1, 0.8]]).repeat(3, 1)
    with torch.no_grad():
        assert torch.equal(tuned.ema.module(x, t, d, y, guidance=guidance), src(x, t, d, y))
    last = dict(tuned.model.named_modules())[names[0]].mlp[-1]
    assert not last.weight.any()
    tuned.run()  # gradients reach the zeroed layers
    assert last.weight.any()


def test_only_step_size_embedder_keys_may_be_missing(tmp_path):
    model = MLP(dim=2, width=8, depth=1)
    state = model.state_dict()
    d_keys = d_embedder_keys(model)["cond.d_embedder"]
    cases = {
        "other_missing": (
            {k: v for k, v in state.items() if k != "cond.t_embedder.mlp.0.bias"},
            "missing 'cond.t_embedder",
        ),
        "extra": ({**state, "extra.weight": torch.zeros(1)}, "unexpected 'extra.weight'"),
        "partial_d": ({k: v for k, v in state.items() if k != d_keys[0]}, f"missing '{d_keys[0]}'"),
        "shape": ({**state, "out.bias": torch.zeros(3)}, "out.bias has shape"),
    }
    for case, (tensors, message) in cases.items():
        file = tmp_path / f"{case}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(file))
        with pytest.raises(UserError, match=message):
            load_network(MLP(dim=2, width=8, depth=1), file)
    with pytest.raises(UserError, match="absent.safetensors is missing"):
        load_network(model, tmp_path / "absent.safetensors")


def test_resume_uses_the_runs_own_checkpoint_not_the_source(flow_run, tmp_path, assert_same_state, config):
    """A resumed fine-tuning run ends bit-identical to an uninterrupted one (the same steps computed in this
    process: exact on any machine) without reading its source again."""
    straight = Trainer(
        config("dit", "steps=4", "ckpt_every=100", f"init_from={flow_run}"), tmp_path / "a", progress=False
    )
    straight.run()
    source = tmp_path / "source"
    shutil.copytree(flow_run, source)
    first = Trainer(config("dit", "steps=2", "ckpt_every=100", f"init_from={source}"), tmp_path / "b", progress=False)
    first.run()
    shutil.rmtree(source)  # a resumed run must not read it again
    with pytest.raises(UserError, match="init_from"):  # not a key that may change on resume
        Trainer(config("dit", "steps=4", f"init_from={flow_run}"), tmp_path / "b", progress=False)
    resumed = Trainer(config("dit", "steps=4", "ckpt_every=100", f"init_from={source}"), tmp_path / "b", progress=False)
    assert resumed.step == 2 and resumed.init_source is None
    resumed.run()
    assert_same_state(straight, resumed)
    assert resumed.ema.num_updates == straight.ema.num_updates == 4
