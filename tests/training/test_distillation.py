"""Distillation runs (teacher=RUN): the teacher is loaded by the trainer and bound to the objective, the
student starts from it, progressive distillation hands its teacher over at each stage and resumes exactly."""

import pytest
import torch
from safetensors.torch import load_file

from shortcut_models import checkpoints as ckpt
from shortcut_models.errors import UserError
from shortcut_models.objectives import Progress, ProgressiveDistillation
from shortcut_models.training import Trainer

DISTIL = ["max_steps=8", "ckpt_every=100"]  # K = 3 stages


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory, nano_config):
    out = tmp_path_factory.mktemp("flow")
    Trainer(nano_config("steps=3", "max_steps=8", objective="flow"), out, progress=False).run()
    return out


def weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stages_and_hand_over_points():
    obj = ProgressiveDistillation(max_steps=8)
    levels = [obj.level(Progress(step, 14)) for step in range(14)]
    handovers = [step for step in range(14) if obj.teacher_refresh(Progress(step, 14)) is not None]
    assert levels == [2] * 5 + [1] * 5 + [0] * 4  # d = 1/4, then 1/2, then 1: floor(step / (14 / 3))
    assert handovers == [5, 10]
    assert obj.teacher_refresh(Progress(5, 14)) == "ema"  # the student's EMA (target_network, the authors')
    assert (
        ProgressiveDistillation.from_knobs(max_steps=8, target_network="online").teacher_refresh(Progress(5, 14))
        == "online"
    )


def test_consistency_distillation_binds_the_frozen_teacher_and_starts_from_it(flow_run, nano_config, tmp_path):
    cfg = nano_config("steps=2", *DISTIL, f"teacher={flow_run}", objective="consistency-distillation")
    trainer = Trainer(cfg, tmp_path / "cd", progress=False)
    source = load_file(str(ckpt.latest_checkpoint(flow_run) / ckpt.EMA_WEIGHTS))
    assert same(weights(trainer.teacher), source) and same(weights(trainer.ema.module), source)
    assert trainer.init_source is not None
    trainer.run()
    assert same(weights(trainer.teacher), source)  # frozen
    assert not same(weights(trainer.model), load_file(str(ckpt.latest_checkpoint(flow_run) / ckpt.ONLINE_WEIGHTS)))


def test_progressive_distillation_resumes_exactly_across_stages(flow_run, nano_config, tmp_path, assert_same_state):
    """Stopped after the first hand-over and resumed, the run ends bit-identical to an uninterrupted one (teacher
    included): the same steps computed in this process, so the comparison is exact on any machine."""

    def config():
        return nano_config("steps=14", *DISTIL, f"teacher={flow_run}", objective="progressive-distillation")

    straight = Trainer(config(), tmp_path / "a", progress=False)
    straight.run()
    first = Trainer(config(), tmp_path / "b", progress=False)
    for step in range(8):  # stopped in stage 1, after the first hand-over
        first.train_step(step)
        first.step += 1
    first.save()
    handed = weights(first.teacher)
    resumed = Trainer(config(), tmp_path / "b", progress=False)
    assert resumed.step == 8 and same(weights(resumed.teacher), handed)  # from its own checkpoint
    assert not same(handed, load_file(str(ckpt.latest_checkpoint(flow_run) / ckpt.EMA_WEIGHTS)))
    resumed.run()  # crosses the second hand-over at step 10
    assert_same_state(straight, resumed)
    assert same(weights(straight.teacher), weights(resumed.teacher))


def test_teacher_run_errors(flow_run, nano_config, tmp_path):
    with pytest.raises(UserError, match="teacher=RUN"):
        Trainer(nano_config("steps=1", objective="progressive-distillation"), tmp_path / "x", progress=False)
    with pytest.raises(UserError, match="teacher"):
        Trainer(
            nano_config("steps=1", f"teacher={tmp_path / 'nothing'}", objective="consistency-distillation"),
            tmp_path / "y",
            progress=False,
        )
    shortcut = tmp_path / "shortcut"
    Trainer(nano_config("steps=1", "max_steps=8"), shortcut, progress=False).run()
    with pytest.raises(UserError, match="flow matching"):
        Trainer(
            nano_config("steps=1", *DISTIL, f"teacher={shortcut}", objective="consistency-distillation"),
            tmp_path / "z",
            progress=False,
        )
