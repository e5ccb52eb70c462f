"""Every registered objective, in one test parametrised over the registry (a new objective is covered by its
registry line): its targets on a tiny batch have the kinds and shapes its class declares, a tiny run trains
(finite losses, weights that move), the trained run samples at 1 and 4 steps, and its knobs round-trip
through the configuration and the checkpoint.

The runs are class-conditional (the eight_gaussians preset: 2-D points with 8 labels, the residual MLP), so
the paths that need labels run too (shortcut's and live reflow's label dropout, ESC's guidance in training,
iMF's guided targets); the distillation methods start from a flow-matching run of the same data. The
network each method trains is the objective's own choice: its step-size input, and the guidance input only
where the objective needs it (iMF).
"""

import json
import math

import pytest
import torch
from torch import nn

from shortcut_models.config import build_config
from shortcut_models.inference import load_model
from shortcut_models.models.mlp import MLP
from shortcut_models.objectives import OBJECTIVES, Progress, build_objective
from shortcut_models.training import Trainer

PRESET = "eight_gaussians"
CLASSES = 8
TINY = [
    "steps=3",
    "batch_size=16",
    "eval_every=0",
    "logger=none",
    "sample_steps=[1]",
    "class_conditional=true",
    "model_args.width=32",
    "model_args.depth=1",
]

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks; restores the thread count after the module


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "flow"
    Trainer(build_config(PRESET, "flow", None, TINY), out, progress=False).run()
    return out


class Field(nn.Module):
    """A smooth stand-in network: u = tanh(W x) + t - d + 0.01 y (+ the guidance input where one is fed)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x, t, d, y, guidance=None):
        out = torch.tanh(self.lin(x)) + t[:, None] - d[:, None] + 0.01 * y[:, None].float()
        return out if guidance is None else out + 0.1 * guidance[:, :1]


def as_override(knob: str, value) -> str:
    """``knob=value`` as the command line writes it (strings bare, everything else as JSON)."""
    return f"{knob}={value if isinstance(value, str) else json.dumps(value)}"


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_builds_trains_samples_and_round_trips(name, teacher, tmp_path):
    cls = OBJECTIVES[name]
    extra = [f"teacher={teacher}"] if cls.teacher_run else []

    # targets on a tiny batch: the declared kinds of rows, leading kinds first, and the shapes of the batch
    objective = build_objective(name, CLASSES, {"teacher": str(teacher)})
    x1 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % CLASSES
    tg = objective.targets(Field(), x1, y, torch.Generator().manual_seed(1), Progress(1, 3))
    counts = objective.kind_rows(16)
    assert len(counts) == len(cls.row_kinds) and sum(counts) == 16
    assert tg.kind.tolist() == [i for i, n in enumerate(counts) for _ in range(n)]
    assert tg.x_t.shape == tg.v.shape == x1.shape and tg.t.shape == tg.d.shape == tg.y.shape == (16,)
    assert (tg.guidance is not None) == cls.guidance_input
    assert ((tg.t >= 0) & (tg.t <= 1) & (tg.d >= 0) & (tg.d <= 1)).all() and torch.isfinite(tg.v).all()
    assert ((tg.y >= 0) & (tg.y <= CLASSES)).all()  # a real label or the null label

    # a tiny run trains: finite losses, weights that move, on the network the objective chooses
    trainer = Trainer(build_config(PRESET, name, None, [*TINY, *extra]), tmp_path / name, progress=False)
    assert isinstance(trainer.model, MLP) and trainer.model.config["step_input"] == cls.step_input
    assert trainer.model.guidance_input == cls.guidance_input
    before = [p.detach().clone() for p in trainer.model.parameters()]
    losses, loss = [], trainer.objective.loss

    def recorded(model, targets):
        out = loss(model, targets)
        losses.append(float(out[0]))
        return out

    trainer.objective.loss = recorded
    trainer.run()
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses), losses
    after = list(trainer.model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))

    # the trained run samples at 1 and 4 steps: finite, distinct points
    loaded = load_model(tmp_path / name, "cpu")
    assert loaded.step == 3 and loaded.spec.objective == name
    for steps in (1, 4):
        x = loaded.generate(8, steps, seed=3, labels=torch.arange(8))
        assert x.shape == (8, 2) and torch.isfinite(x).all() and x.std(dim=0).min() > 0, steps

    # its knobs round-trip: the checkpoint's objective is the run's, and every knob set as key=value comes back
    assert loaded.objective == trainer.objective
    knobs = trainer.objective.args()
    again = build_config(PRESET, name, None, [*TINY, *(as_override(k, v) for k, v in knobs.items())])
    assert again.resolved_objective_args() == knobs
    assert build_objective(name, CLASSES, knobs) == trainer.objective
