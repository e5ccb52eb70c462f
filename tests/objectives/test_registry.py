"""The objective registry: one class plus one registry line is all a new objective needs.

The objective below is the worked example of docs/architecture.md ("Adding an objective").
"""

import json
from dataclasses import dataclass

import pytest
import torch

from shortcut_models import checkpoints as ckpt
from shortcut_models.cli import build_parser, main
from shortcut_models.config import build_config
from shortcut_models.errors import UserError
from shortcut_models.inference import load_model
from shortcut_models.objectives import OBJECTIVES, FlowMatching, Objective, Shortcut, build_objective
from shortcut_models.objectives.base import knob
from shortcut_models.training import Trainer
from shortcut_models.validation import Float


@dataclass(kw_only=True)
class ScaledFlow(FlowMatching):
    """Flow matching whose velocity target is multiplied by ``scale`` (a knob)."""

    scale: float = knob(1.0, Float(), "factor of the velocity target")

    name = "scaled-flow"
    title = "scaled flow matching"

    def build_targets(self, networks, x0, x1, y, draws, progress):
        tg = super().build_targets(networks, x0, x1, y, draws, progress)
        tg.v = tg.v * self.scale
        return tg


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(OBJECTIVES, ScaledFlow.name, ScaledFlow)  # the one registry line


def test_the_registry():
    assert list(OBJECTIVES)[:2] == ["flow", "shortcut"]
    for name, cls in OBJECTIVES.items():
        assert cls.name == name and issubclass(cls, Objective) and cls.title
    recipe = ("time_sampler", "time_mu", "time_sigma", "loss_weight", "adaptive_power", "adaptive_eps", "huber_c")
    assert Shortcut.knobs() == (
        "max_steps",
        *recipe,
        "class_dropout",
        "target_network",
        "target_clamp",
        "bootstrap_every",
        "bootstrap_cfg",
        "cfg_scale",
        "dt_bias",
        "clip",
    )
    obj = build_objective("shortcut", 10, {"bootstrap_every": 4})
    assert obj.num_classes == 10 and obj.args()["bootstrap_every"] == 4
    assert build_objective("shortcut", 10, obj.args()) == obj  # args() rebuilds the objective
    assert (Shortcut().kind_rows(64), FlowMatching().kind_rows(64)) == ((8, 56), (64,))
    assert (Shortcut().sampling_d, FlowMatching().sampling_d) == (None, 1 / 128)


def test_unknown_names_and_knobs_are_refused():
    with pytest.raises(ValueError, match="objective must be one of"):
        build_objective("diffusion", 0)
    with pytest.raises(ValueError, match="unknown objective knob"):
        build_objective("flow", 0, {"scale": 2.0})  # nobody has this knob until ScaledFlow is registered


def test_a_new_objective_reaches_config_cli_trainer_and_checkpoints(registered, tmp_path):
    cfg = build_config(
        "checkerboard",
        "scaled-flow",
        None,
        [
            "scale=2",
            "steps=2",
            "batch_size=16",
            "logger=none",
            "model_args.width=16",
            "model_args.depth=1",
            "sample_steps=[1]",
        ],
    )
    assert cfg.resolved_objective_args() == {**FlowMatching().args(), "scale": 2}
    assert "scaled-flow" in build_parser().parse_args(["train", "--objective", "scaled-flow"]).objective
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    x1 = torch.randn(4, 2)
    tg = trainer.objective.targets(None, x1, generator=torch.Generator().manual_seed(0))
    ref = FlowMatching().targets(None, x1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tg.v, 2 * ref.v)
    final = trainer.run()
    saved = json.loads((final / ckpt.CONFIG).read_text())
    assert (saved["objective"], saved["objective_args"]["scale"], saved["sampling_d"]) == ("scaled-flow", 2, 1 / 128)
    loaded = load_model(final, "cpu")
    assert isinstance(loaded.objective, ScaledFlow) and loaded.objective.scale == 2


def test_the_command_line_offers_registered_objectives(registered, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "train",
                "--preset",
                "checkerboard",
                "--objective",
                "scaled-flow",
                "--quiet",
                "steps=1",
                "batch_size=8",
                "logger=none",
                "model_args.width=8",
                "model_args.depth=1",
                "sample_steps=[1]",
                "scale=0.5",
            ]
        )
        == 0
    )
    assert main(["train", "--objective", "nope"]) == 2
    assert "scaled-flow" in capsys.readouterr().err  # the list of choices names it


def test_an_unregistered_objective_in_a_checkpoint_is_one_line(registered, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    cfg = build_config(
        "checkerboard",
        "scaled-flow",
        None,
        ["steps=1", "batch_size=8", "logger=none", "sample_steps=[1]", "model_args.width=8", "model_args.depth=1"],
    )
    Trainer(cfg, run, progress=False).run()
    monkeypatch.delitem(OBJECTIVES, ScaledFlow.name)
    with pytest.raises(UserError, match="objective must be one of"):
        load_model(run, "cpu")
