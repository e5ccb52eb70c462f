"""Runs saved before the recipe parts existed (tests/fixtures/pre_recipe_runs: checkerboard runs of shortcut
with ``bootstrap_ema=true`` and of MeanFlow, stopped at step 5 by that code) resume with this code and
continue as a run that never stopped: their saved knobs are read under today's names, their missing
recipe knobs take the values they trained with, and the optimiser, EMA and random state carry on.
Their networks fed the step size as its level -log2 d: resumed without ``model_args.step_input`` they
keep it (a new MeanFlow run feeds d itself), so the run they are compared with sets it.

The fixtures were computed on another machine's CPU, so the comparison allows float rounding (on the
machine that wrote them the resumed run is bit-identical: benchmarks/fingerprint.py, docs/architecture.md).
"""

import shutil
from pathlib import Path

import pytest
import torch

from shortcut_models.config import build_config
from shortcut_models.inference import load_model
from shortcut_models.training import Trainer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "pre_recipe_runs"
TOY = ["batch_size=16", "logger=none", "model_args.width=16", "model_args.depth=1", "sample_steps=[1]"]
RUNS = {
    "shortcut-ema": ("shortcut", [*TOY, "warmup_steps=3", "ckpt_every=5", "bootstrap_ema=true", "bootstrap_every=4"]),
    "meanflow": ("meanflow", [*TOY, "warmup_steps=3", "ckpt_every=5"]),
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list(RUNS))
def test_a_run_saved_before_resumes_as_if_it_never_stopped(name, tmp_path):
    objective, overrides = RUNS[name]
    old = tmp_path / "old"
    shutil.copytree(FIXTURES / name, old)
    resumed = Trainer(build_config("checkerboard", objective, None, [*overrides, "steps=10"]), old, progress=False)
    assert resumed.step == 5  # accepted as the same run: same settings under today's names
    assert resumed.model.config["step_input"] == resumed.cfg.model_args["step_input"] == "level"
    resumed.run()
    level = [*overrides, "steps=10", "model_args.step_input=level"]  # what the old run trained with
    straight = Trainer(build_config("checkerboard", objective, None, level), tmp_path / "new", progress=False)
    straight.run()
    for a, b in ((resumed.model, straight.model), (resumed.ema.module, straight.ema.module)):
        for (key, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=key)
    assert load_model(old, "cpu").objective.args() == straight.objective.args()


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
