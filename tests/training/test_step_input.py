"""The run's choice of the network's step-size input (``model_args.step_input``): the objective's own in a
new run (MeanFlow: "size", the others: "level"), the user's where set, the checkpoint's in a resumed run
and the source's in a fine-tuning run; recorded in checkpoints."""

import pytest

from shortcut_models import checkpoints as ckpt
from shortcut_models.cli import main
from shortcut_models.config import build_config, describe_config
from shortcut_models.errors import UserError
from shortcut_models.inference import load_model
from shortcut_models.models import STEP_INPUTS
from shortcut_models.objectives import OBJECTIVES
from shortcut_models.training import Trainer

TOY = ["model_args.width=16", "model_args.depth=1", "batch_size=16", "logger=none", "sample_steps=[1]", "eval_every=0"]

pytestmark = pytest.mark.usefixtures("one_thread")


def toy(objective, *extra):
    return build_config("checkerboard", objective, None, [*TOY, "steps=2", *extra])


def recorded(run):
    """(the training config's model_args.step_input, the network description's) of the run's latest checkpoint."""
    config = ckpt.read_config(ckpt.latest_checkpoint(run))
    return ckpt.training_config(config)["model_args"]["step_input"], config["network"]["args"]["step_input"]


def test_each_objective_chooses_a_valid_input_meanflow_d_itself():
    assert all(cls.step_input in STEP_INPUTS for cls in OBJECTIVES.values())
    assert OBJECTIVES["meanflow"].step_input == "size"
    levels = ("flow", "shortcut", "consistency-training", "consistency-distillation", "progressive-distillation")
    assert all(OBJECTIVES[name].step_input == "level" for name in (*levels, "live-reflow"))


@pytest.mark.parametrize(("objective", "expected"), [("meanflow", "size"), ("shortcut", "level")])
def test_a_new_run_records_its_objectives_choice(objective, expected, tmp_path):
    trainer = Trainer(toy(objective), tmp_path, progress=False)
    assert trainer.model.config["step_input"] == trainer.cfg.model_args["step_input"] == expected
    trainer.save()
    assert recorded(tmp_path) == (expected, expected)
    assert load_model(tmp_path, "cpu").model.config["step_input"] == expected
    # resumed with the same command line: the same run
    assert Trainer(toy(objective), tmp_path, progress=False).model.config["step_input"] == expected


def test_the_users_setting_wins_and_a_resumed_run_keeps_its_own(tmp_path):
    trainer = Trainer(toy("meanflow", "model.model_args.step_input=level"), tmp_path, progress=False)
    assert trainer.model.config["step_input"] == "level"
    trainer.save()
    resumed = Trainer(toy("meanflow"), tmp_path, progress=False)  # unset: the checkpoint's, not meanflow's
    assert resumed.step == 0 and resumed.model.config["step_input"] == "level"
    with pytest.raises(UserError, match=r"different config \(model_args: .*'level'.* there, .*'size'.* now\)"):
        Trainer(toy("meanflow", "model_args.step_input=size"), tmp_path, progress=False)


def test_a_fine_tuning_run_takes_its_sources_input(tmp_path):
    source = tmp_path / "shortcut"
    Trainer(toy("shortcut"), source, progress=False).run()  # "level"
    tuned = Trainer(toy("meanflow", f"init_from={source}"), tmp_path / "tuned", progress=False)
    assert tuned.model.config["step_input"] == "level" and tuned.init_source is not None  # not meanflow's "size"
    tuned._release()
    with pytest.raises(UserError, match="init_from .* different model_args"):
        Trainer(toy("meanflow", f"init_from={source}", "model_args.step_input=size"), tmp_path / "b", progress=False)


def test_a_bad_value_is_one_clear_error(capsys):
    with pytest.raises(UserError, match=r"^model_args.step_input must be one of 'level', 'size' .*got 'sizes'$"):
        toy("meanflow", "model_args.step_input=sizes")
    assert main(["config", "--preset", "checkerboard", "model_args.step_input=0"]) == 2
    err = capsys.readouterr().err
    assert "model_args.step_input must be one of 'level', 'size'" in err and len(err.strip().splitlines()) == 1


def test_the_command_line_sets_it_and_shows_the_objectives_choice(capsys):
    for key in ("model_args.step_input", "model.model_args.step_input"):
        assert toy("meanflow", f"{key}=level").model_args == {"width": 16, "depth": 1, "step_input": "level"}
    text = describe_config(toy("meanflow"))
    assert '# step_input unset: a new run takes meanflow\'s, "size"' in text
    assert "# step_input unset" not in describe_config(toy("meanflow", "model_args.step_input=size"))
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "model_args.step_input=level|size" in " ".join(capsys.readouterr().out.split())


def test_shortcut_train_records_the_setting(tmp_path):
    out = tmp_path / "run"
    command = ["train", "--out", str(out), "--quiet", "--preset", "checkerboard", "--objective", "meanflow"]
    assert main([*command, *TOY, "steps=1", "model_args.step_input=level"]) == 0
    assert recorded(out) == ("level", "level")
