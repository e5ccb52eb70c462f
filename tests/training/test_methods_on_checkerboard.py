"""Every registered objective (the study's 11 methods) trains on the checkerboard preset's MLP and samples.

A few training steps each (the distillation methods from a flow-matching teacher run), then the saved
run is loaded and sampled at 1 and 2 steps: finite points of the right shape. The network each method
trains is checked too: an MLP whose step-size input is the objective's own choice, with the guidance
input only where the objective needs it (iMF), so nothing falls back to the DiT's settings.
"""

import pytest
import torch

from shortcut_models.config import build_config
from shortcut_models.inference import load_model
from shortcut_models.models.mlp import MLP
from shortcut_models.objectives import OBJECTIVES
from shortcut_models.training import Trainer

TINY = ["steps=2", "batch_size=16", "eval_every=0", "logger=none", "sample_steps=[1]"]

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks; restores the thread count after the module


def train(method: str, out, extra: tuple[str, ...] = ()) -> Trainer:
    trainer = Trainer(build_config("checkerboard", method, None, [*TINY, *extra]), out, progress=False)
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "flow"
    train("flow", out)
    return out


@pytest.mark.parametrize("method", list(OBJECTIVES))
def test_every_method_trains_on_the_mlp_and_samples(method, teacher, tmp_path):
    extra = (f"teacher={teacher}",) if OBJECTIVES[method].teacher_run else ()
    trainer = train(method, tmp_path / method, extra)
    net = trainer.model
    assert isinstance(net, MLP)
    assert net.config["step_input"] == OBJECTIVES[method].step_input
    assert net.guidance_input == OBJECTIVES[method].guidance_input
    loaded = load_model(tmp_path / method, "cpu")
    assert loaded.step == 2 and loaded.spec.objective == method
    for steps in (1, 2):
        x = loaded.generate(8, steps, seed=3)
        assert x.shape == (8, 2) and torch.isfinite(x).all(), (method, steps)
        assert x.std(dim=0).min() > 0  # distinct points, not one constant
