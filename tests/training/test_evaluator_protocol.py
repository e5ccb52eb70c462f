"""A third-party evaluator that follows only the :class:`~shortcut_models.training.trainer.Evaluator`
protocol runs inside a training run: every call the trainer makes is one the protocol declares."""

import inspect

from shortcut_models.config import build_config
from shortcut_models.inference import LoadedModel
from shortcut_models.training import Trainer
from shortcut_models.training.trainer import Evaluator


class RecordingEvaluator:
    """Written against the protocol alone: records every call; evaluates every 3rd step."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.count = 0

    def start(self, step: int, is_main: bool) -> None:
        self.calls.append(("start", step, is_main))

    def due(self, step: int) -> bool:
        self.calls.append(("due", step))
        return step % 3 == 0

    def __call__(self, model: LoadedModel, step: int, logger) -> object:
        assert isinstance(model, LoadedModel) and model.step == step
        self.calls.append(("call", step, logger is not None))
        self.count += 1
        return None

    def summary(self, wall_seconds: float) -> str:
        self.calls.append(("summary", wall_seconds > 0))
        return f"recorded {self.count} evaluations"


def test_the_protocol_declares_what_the_trainer_calls():
    members = {name for name, _ in inspect.getmembers(Evaluator) if not name.startswith("_") or name == "__call__"}
    assert {"start", "due", "__call__", "count", "summary"} <= members
    for name in ("start", "due", "__call__", "count", "summary"):
        assert inspect.getdoc(getattr(Evaluator, name)), name


def test_a_third_party_evaluator_runs_inside_a_training_run(tmp_path, capsys):
    cfg = build_config(
        "checkerboard",
        "flow",
        None,
        ["model_args.width=16", "model_args.depth=1", "batch_size=16", "steps=7", "log_every=7", "logger=none"],
    )
    evaluator = RecordingEvaluator()
    Trainer(cfg, tmp_path, progress=False, evaluator=evaluator).run()
    calls = evaluator.calls
    assert calls[0] == ("start", 0, True)
    assert [c for c in calls if c[0] == "due"] == [("due", s) for s in range(1, 8)]
    assert [c for c in calls if c[0] == "call"] == [("call", 3, True), ("call", 6, True)]
    assert calls[-1] == ("summary", True)
    assert "recorded 2 evaluations" in capsys.readouterr().err
