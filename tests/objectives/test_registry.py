"""The objective registry: one file plus one registry line is all a new objective needs.

The new objective is tests/objectives/scaled_flow.py, the worked example of docs/architecture.md ("Adding an
objective"), written outside the package and registered here by one line: it reaches the configuration,
the command line, the trainer, checkpoints, sampling, the study and the docs' list of objectives, and no
other file names it.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from shortcut_models import checkpoints as ckpt
from shortcut_models.cli import build_parser, main
from shortcut_models.config import build_config
from shortcut_models.errors import UserError
from shortcut_models.inference import load_model
from shortcut_models.objectives import (
    OBJECTIVES,
    FlowMatching,
    Objective,
    Recipe,
    Shortcut,
    build_objective,
    registry_table,
)
from shortcut_models.training import Trainer

ROOT = Path(__file__).resolve().parents[2]
TABLE_START = (
    "<!-- the registered objectives: objectives.registry_table(), checked by tests/objectives/test_registry.py -->"
)
TABLE_END = "<!-- end of the registered objectives -->"


def load_scaled_flow() -> type[Objective]:
    """The class of tests/objectives/scaled_flow.py, loaded as a third party's module."""
    spec = importlib.util.spec_from_file_location("scaled_flow", Path(__file__).with_name("scaled_flow.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ScaledFlow


ScaledFlow = load_scaled_flow()


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(OBJECTIVES, ScaledFlow.name, ScaledFlow)  # the one registry line


def test_the_registry():
    for name, cls in OBJECTIVES.items():
        assert cls.name == name and issubclass(cls, Objective) and cls.title
        assert isinstance(cls.recipe, Recipe)  # each method writes its own recipe
        assert not cls.teacher_run or cls.teacher_objective in OBJECTIVES
        assert cls.schedule_knob is None or cls.schedule_knob in cls.knobs()
    recipe = ("time_sampler", "time_mu", "time_sigma", "loss_weight", "adaptive_power", "adaptive_eps", "huber_c")
    assert Shortcut.knobs() == (
        "max_steps",
        *recipe,
        "target_network",
        "target_clamp",
        "class_dropout",
        "bootstrap_every",
        "bootstrap_cfg",
        "cfg_scale",
        "dt_bias",
        "clip",
    )
    assert FlowMatching.knobs() == ("max_steps", *recipe, "class_dropout")  # no network builds its targets
    obj = build_objective("shortcut", 10, {"bootstrap_every": 4, "time_sampler": "uniform"})
    assert obj.num_classes == 10 and obj.args()["bootstrap_every"] == 4 and obj.recipe.time_sampler == "uniform"
    assert obj.recipe.target_clamp == 4.0  # the rest of shortcut's own recipe kept
    assert build_objective("shortcut", 10, obj.args()) == obj  # args() rebuilds the objective
    assert (Shortcut().kind_rows(64), FlowMatching().kind_rows(64)) == ((8, 56), (64,))
    assert (Shortcut().sampling_d, FlowMatching().sampling_d) == (None, 1 / 128)


def test_unknown_names_and_knobs_are_refused():
    with pytest.raises(ValueError, match="objective must be one of"):
        build_objective("diffusion", 0)
    with pytest.raises(ValueError, match="unknown objective knob"):
        build_objective("flow", 0, {"scale": 2.0})  # nobody has this knob until ScaledFlow is registered
    with pytest.raises(TypeError, match="no knob target_network"):
        FlowMatching.from_knobs(target_network="ema")  # another objective's knob, asked of this one directly
    with pytest.raises(ValueError, match="flow matching has no target network"):
        FlowMatching(recipe=Recipe(target_network="ema"))
    with pytest.raises(ValueError, match="shortcut has a target network"):
        Shortcut(recipe=Recipe())


def test_the_docs_list_the_registered_objectives():
    """docs/architecture.md holds :func:`registry_table` between its two markers (after a change to the
    registry, paste the table below into it)."""
    docs = (ROOT / "docs" / "architecture.md").read_text()
    assert TABLE_START in docs and TABLE_END in docs
    held = docs.split(TABLE_START)[1].split(TABLE_END)[0].strip("\n") + "\n"
    assert held == registry_table(), f"the objectives table of docs/architecture.md is out of date:\n{registry_table()}"


def test_a_new_objective_reaches_config_cli_trainer_checkpoints_and_the_docs(registered, tmp_path):
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
    plain = {k: v for k, v in FlowMatching().args().items() if k != "class_dropout"}  # max_steps and the recipe
    assert cfg.resolved_objective_args() == {**plain, "scale": 2}
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
    for steps in (1, 4):
        x = loaded.generate(8, steps, seed=3)
        assert x.shape == (8, 2) and torch.isfinite(x).all()
    row = next(line for line in registry_table().splitlines() if "`scaled-flow`" in line)
    assert "Scaled flow matching: flow matching whose velocity target is multiplied" in row
    assert "`scaled_flow.py`" in row and "flow | level | no |" in row


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


@pytest.mark.slow  # a whole study at its quick budget (digits and checkerboard, two seeds), about a minute
@pytest.mark.usefixtures("one_thread")
def test_a_new_objective_runs_in_a_one_method_study(registered, tmp_path):
    out = tmp_path / "study"
    assert main(["study", "--quick", "--quiet", "--jobs", "1", "--methods", "scaled-flow", "--out", str(out)]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["methods"] == ["flow", "scaled-flow"]  # flow matching, the study's baseline, is always in
    report = (out / "report.md").read_text()
    assert "scaled flow matching" in report
    for domain, steps in (("digits", plan["steps"]), ("checkerboard", plan["toy_steps"])):
        for seed in plan["seeds"]:
            rows = json.loads((out / "scores" / domain / f"scaled-flow-own-seed{seed}" / f"{steps}.json").read_text())
            assert [r["steps"] for r in rows["rows"]] == plan["eval_steps"]
