"""Configuration keys in sections: every key in one section, dotted overrides, section tables in files,
and `shortcut config`, whose output `shortcut train --config` reads back."""

import dataclasses
import json

import pytest

from shortcut_models.cli import main
from shortcut_models.config import SECTIONS, TrainConfig, build_config, describe_config, toml_value
from shortcut_models.errors import UserError
from shortcut_models.objectives import OBJECTIVES


def test_every_key_is_in_exactly_one_section_and_has_a_meaning_and_a_range():
    listed = [key for keys in SECTIONS.values() for key in keys]
    assert sorted(listed) == sorted(f.name for f in dataclasses.fields(TrainConfig))
    assert len(listed) == len(set(listed))
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["meaning"] and f.metadata["spec"].describe(), f.name


def test_dotted_keys_name_the_same_keys_as_flat_ones():
    flat = build_config("digits-uncond", "meanflow", None, ["lr=3e-4", "interval_share=0.5", "model_args.width=7"])
    dotted = build_config(
        "digits-uncond",
        "meanflow",
        None,
        ["optim.lr=3e-4", "objective.interval_share=0.5", "model.model_args.width=7"],
    )
    assert flat == dotted and dotted.lr == 3e-4 and dotted.objective_args["interval_share"] == 0.5
    assert build_config(None, None, None, ["run.preset=moons"]).preset == "moons"


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.bogus=1", "unknown key 'bogus' in section [optim]"),
        ("model.width=3", "unknown key 'width' in section [model]"),
        ("eval.lr=1", "unknown key 'lr' in section [eval]"),
        ("optim.lr=2", "lr must be a number in (0, 1]"),
    ],
)
def test_bad_dotted_keys_are_one_line(override, message, capsys):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        build_config(None, None, None, [override])
    assert main(["config", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_config_files_may_group_keys_in_sections(tmp_path):
    (tmp_path / "c.toml").write_text(
        '[optim]\nlr = 3e-4\nsteps = 50\n[objective]\nobjective = "flow"\ntime_sampler = "uniform"\n'
        "[model]\nmodel_args = {width = 8, depth = 1}\n"
    )
    (tmp_path / "c.json").write_text(json.dumps({"optim": {"lr": 3e-4, "steps": 50}, "objective": "flow"}))
    toml = build_config("checkerboard", None, str(tmp_path / "c.toml"))
    assert (toml.lr, toml.steps, toml.objective, toml.model_args) == (3e-4, 50, "flow", {"width": 8, "depth": 1})
    assert toml.objective_args["time_sampler"] == "uniform"
    js = build_config("checkerboard", None, str(tmp_path / "c.json"))
    assert (js.lr, js.steps, js.objective) == (3e-4, 50, "flow")
    (tmp_path / "bad.toml").write_text("[optim]\nwidth = 3\n")
    with pytest.raises(UserError, match=r"unknown key 'width' in section \[optim\]"):
        build_config(None, None, str(tmp_path / "bad.toml"))


@pytest.mark.parametrize("objective", list(OBJECTIVES))
@pytest.mark.parametrize("preset", ["digits", "digits-uncond", "imagenet256", "checkerboard"])
def test_the_listing_is_a_config_file_that_trains_the_same_run(preset, objective, tmp_path):
    overrides = ["optim.lr=3e-4", "time_sampler=logit-normal", "sample_steps=[1, 2]"]
    overrides += ["teacher=runs/flow"] if OBJECTIVES[objective].teacher_run else []
    cfg = build_config(preset, objective, None, overrides)
    text = describe_config(cfg)
    for section in SECTIONS:
        assert f"\n[{section}]\n" in text
    for knob in OBJECTIVES[objective].knobs():
        assert f"\n{knob} = " in text  # every knob of the objective, with its value
    (tmp_path / "c.toml").write_text(text)
    again = build_config(None, None, str(tmp_path / "c.toml"))
    same = {k: v for k, v in cfg.to_dict().items() if k != "objective_args"}
    assert {k: v for k, v in again.to_dict().items() if k != "objective_args"} == same
    assert again.resolved_objective_args() == cfg.resolved_objective_args()


def test_shortcut_config_prints_each_key_with_its_meaning_and_range(capsys):
    assert main(["config", "--preset", "digits-uncond", "--objective", "shortcut", "optim.lr=3e-4"]) == 0
    out = capsys.readouterr().out
    assert "lr = 0.0003" in out and "(a number in (0, 1])" in out
    assert 'time_sampler = "grid"' in out and "one of grid, uniform, logit-normal" in out
    assert 'target_network = "ema"' in out and "bootstrap_every = 8" in out  # shortcut's own: the preset sets none
    assert "\n[optim]\n" in out and out.index("[data]") < out.index("[optim]") < out.index("[run]")


def test_train_help_names_the_presets_and_points_to_config(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "digits-uncond" in out and "shortcut config" in out


@pytest.mark.parametrize(
    "value,text",
    [(True, "true"), (3, "3"), (1e-5, "1e-05"), ('a"b', '"a\\"b"'), ([1, 2], "[1, 2]"), ({}, "{}")],
)
def test_toml_values(value, text):
    assert toml_value(value) == text
    assert toml_value({"width": 3, "a b": "x"}) == '{width = 3, "a b" = "x"}'
