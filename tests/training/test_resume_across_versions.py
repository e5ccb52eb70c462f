"""Runs saved before the recipe parts existed (tests/fixtures/pre_recipe_runs: checkerboard runs of shortcut
with ``bootstrap_ema=true`` and of MeanFlow, stopped at step 5 by that code) resume with this code and
continue as a run that never stopped: their saved knobs are read under today's names, their missing
recipe knobs take the values they trained with, and the optimiser, EMA and random state carry on.
Their networks fed the step size as its level -log2 d: resumed without ``model_args.step_input`` they
keep it (a new MeanFlow run feeds d itself), so the run they are compared with sets it.

The fixtures were computed on another machine's CPU, so the comparison allows float rounding (on the
machine that wrote them the resumed run is bit-identical: benchmarks/fingerprint.py, docs/architecture.md).
Measured with this machine (AVX-512) emulating an AVX2 and an SSE4.2 CPU (ATEN_CPU_CAPABILITY,
MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA), 1 and 2 threads: the weights differ by at most 2.4e-7 (SSE4.2,
on weights near zero), 0.074 of the tolerance (rtol 1e-5, atol 3e-6); a resumed run that got the knobs
wrong differs by far more: the shortcut run with the online network as its target instead of the EMA by 23x
the tolerance, MeanFlow with today's adaptive_eps by 1000x, a 10% larger learning rate by 300x.
"""

import shutil
from pathlib import Path

import pytest
import torch

from shortcut_models.config import build_config
from shortcut_models.errors import UserError
from shortcut_models.inference import load_model
from shortcut_models.training import Trainer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "pre_recipe_runs"
TOY = ["batch_size=16", "logger=none", "model_args.width=16", "model_args.depth=1", "sample_steps=[1]"]
RUNS = {
    "shortcut-ema": ("shortcut", [*TOY, "warmup_steps=3", "ckpt_every=5", "bootstrap_ema=true", "bootstrap_every=4"]),
    "meanflow": ("meanflow", [*TOY, "warmup_steps=3", "ckpt_every=5"]),
}
# knobs whose default changed after the fixtures were saved: their runs keep the saved value (a fresh run
# given the same overrides takes today's default, so the run that never stopped is given the old value)
SAVED_WITH = {"meanflow": {"adaptive_eps": 0.001, "class_dropout": 0.0, "flow_row_time": "first"}}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list(RUNS))
def test_a_run_saved_before_resumes_as_if_it_never_stopped(name, tmp_path):
    objective, overrides = RUNS[name]
    old = tmp_path / "old"
    shutil.copytree(FIXTURES / name, old)
    resumed = Trainer(build_config("checkerboard", objective, None, [*overrides, "steps=10"]), old, progress=False)
    assert resumed.step == 5  # accepted as the same run: same settings under today's names
    assert resumed.model.config["step_input"] == resumed.cfg.model_args["step_input"] == "level"
    kept = SAVED_WITH.get(name, {})
    assert {k: getattr(resumed.objective, k) for k in kept} == kept  # not today's defaults
    resumed.run()
    then = [f"{k}={v}" for k, v in kept.items()]
    level = "model_args.step_input=level"  # what the old run trained with
    straight = Trainer(
        build_config("checkerboard", objective, None, [*overrides, *then, level, "steps=10"]),
        tmp_path / "new",
        progress=False,
    )
    straight.run()
    for a, b in ((resumed.model, straight.model), (resumed.ema.module, straight.ema.module)):
        for (key, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=3e-6, msg=key)
    assert load_model(old, "cpu").objective.args() == straight.objective.args()
    again = Trainer(build_config("checkerboard", objective, None, [*overrides, "steps=12"]), old, progress=False)
    assert again.step == 10 and again.objective.args() == straight.objective.args()  # its new checkpoint too
    again._release()


def test_a_knob_whose_default_changed_keeps_its_saved_value_unless_set(tmp_path, capsys):
    """A MeanFlow run saved with adaptive_eps 0.001 (the default then) resumes with 0.001 and says so; set
    explicitly to today's default, the resume is refused as another run's; a fresh run takes 0.01."""
    old = tmp_path / "old"
    shutil.copytree(FIXTURES / "meanflow", old)
    overrides = [*RUNS["meanflow"][1], "steps=6"]
    resumed = Trainer(build_config("checkerboard", "meanflow", None, overrides), old, progress=False)
    assert resumed.objective.adaptive_eps == 0.001 and resumed.cfg.objective_args["adaptive_eps"] == 0.001
    assert "adaptive_eps keeps 0.001" in capsys.readouterr().err
    resumed._release()
    with pytest.raises(UserError, match="different config .objective_args.adaptive_eps: 0.001 there, 0.01 now"):
        Trainer(build_config("checkerboard", "meanflow", None, [*overrides, "adaptive_eps=0.01"]), old, progress=False)
    fresh = Trainer(build_config("checkerboard", "meanflow", None, overrides), tmp_path / "new", progress=False)
    assert fresh.objective.adaptive_eps == 0.01 and fresh.objective.flow_row_time == "smaller"
    fresh._release()


def test_the_old_knob_names_are_read():
    saved = load_model(FIXTURES / "shortcut-ema", "cpu")
    assert saved.objective.target_network == "ema" and saved.objective.bootstrap_every == 4
    assert saved.objective.time_sampler == "grid" and saved.objective.target_clamp == 4.0
    meanflow = load_model(FIXTURES / "meanflow", "cpu").objective
    assert (meanflow.time_sampler, meanflow.loss_weight, meanflow.target_network) == (
        "logit-normal",
        "adaptive",
        "online",
    )
