"""Run logs: CSV files across resumed sessions, TensorBoard events, W&B offline runs resumed by id."""

import builtins
import csv
import importlib.util
import json
import sys

import pytest

from shortcut_models.errors import UserError
from shortcut_models.loggers import BACKENDS, RunLogger, parse_backends


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


@pytest.mark.parametrize(
    "value, expected",
    [
        ("none", ()),
        ("tensorboard", ("tensorboard",)),
        ("wandb", ("wandb",)),
        ("tensorboard,wandb", ("tensorboard", "wandb")),
        ("wandb, tensorboard", ("wandb", "tensorboard")),
        ("wandb,tensorboard,wandb", ("wandb", "tensorboard")),
    ],
)
def test_parse_backends(value, expected):
    assert parse_backends(value) == expected
    assert set(expected) <= set(BACKENDS)


@pytest.mark.parametrize("value", ["", "csv", "tensorboard,mlflow", "none,wandb", "Wandb", "tensorboard,"])
def test_parse_backends_rejects_other_values_in_one_line(value):
    with pytest.raises(ValueError) as info:
        parse_backends(value)
    message = str(info.value)
    assert "\n" not in message and repr(value) in message
    assert all(name in message for name in ("none", "tensorboard", "wandb"))


def test_csv_header_once_and_resume_appends(tmp_path):
    with RunLogger(tmp_path, backends=()) as logger:
        logger.log(10, {"loss": 0.123456789, "lr": 1e-4})
        logger.log(20, {"loss": 2.0, "lr": 1e-4})
    # A resumed run: same header, its rows follow it (a missing key is blank, a new one dropped).
    with RunLogger(tmp_path, backends=()) as logger:
        logger.log(30, {"lr": 5e-5, "loss": 1.5, "extra": 1.0})
        logger.log(40, {"loss": 3})
    assert read_csv(tmp_path / "metrics.csv") == [
        ["step", "loss", "lr"],
        ["10", "0.123457", "0.0001"],
        ["20", "2", "0.0001"],
        ["30", "1.5", "5e-05"],
        ["40", "3", ""],
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_other_sections_get_their_own_csv(tmp_path):
    with RunLogger(tmp_path, backends=()) as logger:
        logger.log(10, {"loss": 1.0})
        logger.log(10, {"fid": 12.5}, section="eval")
    with RunLogger(tmp_path, backends=()) as logger:
        logger.log(20, {"fid": 11.25}, section="eval")
    assert read_csv(tmp_path / "metrics.csv") == [["step", "loss"], ["10", "1"]]
    assert read_csv(tmp_path / "eval.csv") == [["step", "fid"], ["10", "12.5"], ["20", "11.25"]]
    with RunLogger(tmp_path, backends=()) as logger:
        for bad in ("../up", "", "metrics"):
            with pytest.raises(ValueError):
                logger.log(30, {"x": 1.0}, section=bad)


def test_tensorboard_events_with_section_tags(tmp_path):
    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip("tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunLogger(tmp_path) as logger:
        logger.log(5, {"loss": 0.5})
        logger.log(5, {"fid": 7.0}, section="eval")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"train/loss", "eval/fid"}
    (point,) = events.Scalars("eval/fid")
    assert (point.step, point.value) == (5, 7.0)


def test_tensorboard_missing_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with RunLogger(tmp_path, backends=("tensorboard",)) as logger:
        logger.log(1, {"loss": 1.0})
    assert not (tmp_path / "tensorboard").exists()
    assert read_csv(tmp_path / "metrics.csv")[-1] == ["1", "1"]


def test_missing_wandb_is_a_user_error(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb" or name.startswith("wandb."):
            raise ModuleNotFoundError("No module named 'wandb'", name="wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(UserError) as info:
        RunLogger(tmp_path, backends=parse_backends("tensorboard,wandb"))
    assert str(info.value) == "logger=wandb needs the wandb package: pip install 'shortcut-models[wandb]'"
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "wandb.json").exists()


# --- W&B, offline --------------------------------------------------------------------------------


def test_wandb_offline_resume_continues_the_same_run(tmp_path, wandb_offline, wandb_history, wandb_next_second):
    run = tmp_path / "run"
    config = {"objective": "shortcut", "lr": 1e-4}
    with RunLogger(run, backends=("wandb",), config=config, name="first") as logger:
        logger.log(10, {"loss": 1.0})
        logger.log(20, {"loss": 0.5})
        logger.log(20, {"fid": 30.0}, section="eval")
        logger.log(30, {"loss": 0.25})
    state = json.loads((run / "wandb.json").read_text())
    run_id = state["id"]
    assert state["step"] == 30
    wandb_next_second()
    # Resumed from a checkpoint at step 20: steps 20 and 30 come again, then the run goes on.
    with RunLogger(run, backends=("wandb",), config=config, name="first") as logger:
        logger.log(20, {"loss": 0.6})
        logger.log(30, {"loss": 0.3})
        logger.log(40, {"loss": 0.125})
        logger.log(40, {"fid": 20.0}, section="eval")
    assert json.loads((run / "wandb.json").read_text()) == {"id": run_id, "step": 40}

    offline_runs = sorted((wandb_offline / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(d.name.endswith(run_id) or f"-{run_id}-" in d.name for d in offline_runs)
    assert [sorted(p.name for p in d.glob("*.wandb")) for d in offline_runs] == [[f"run-{run_id}.wandb"]] * 2
    assert not (run / "wandb").exists()  # WANDB_DIR wins over the run directory

    history = wandb_history(wandb_offline)
    assert {rid for rid, _, _ in history} == {run_id}
    logged = [(row["_step"], {k: v for k, v in row.items() if not k.startswith("_")}) for _, _, row in history]
    assert logged == [
        (10, {"train/loss": 1.0}),
        (20, {"train/loss": 0.5, "eval/fid": 30.0}),
        (30, {"train/loss": 0.25}),
        (40, {"train/loss": 0.125, "eval/fid": 20.0}),  # the repeated steps 20 and 30 were skipped
    ]
    assert history[-1][1] == offline_runs[1].name  # the last value is in the resumed session's files
    # The CSV keeps every row, repeats included, as before.
    assert [r[0] for r in read_csv(run / "metrics.csv")[1:]] == ["10", "20", "30", "20", "30", "40"]


def test_wandb_without_wandb_dir_writes_into_the_run(tmp_path, wandb_offline, wandb_history, monkeypatch):
    monkeypatch.delenv("WANDB_DIR")
    run = tmp_path / "run"
    with RunLogger(run, backends=parse_backends("tensorboard,wandb")) as logger:
        logger.log(1, {"loss": 2.0})
    run_id = json.loads((run / "wandb.json").read_text())["id"]
    (offline_run,) = (run / "wandb").glob(f"offline-run-*-{run_id}")
    rows = [row for _, _, row in wandb_history(run)]
    assert [(row["_step"], row["train/loss"]) for row in rows] == [(1, 2.0)]
    assert offline_run.is_dir() and not any((wandb_offline / "wandb").glob("*"))


def test_a_table_of_rows_per_step(tmp_path):
    """log_table: one CSV line per row; the backends get one scalar per (key, row) tagged by the row's ``by``."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunLogger(tmp_path, backends=("tensorboard",)) as logger:
        rows = [{"steps": 1, "fid": 30.0, "seconds": 2.0}, {"steps": 4, "fid": 12.5, "seconds": 5.0}]
        logger.log_table(1000, rows, "eval", by="steps", keys=["fid"])
    lines = read_csv(tmp_path / "eval.csv")
    assert lines == [["step", "steps", "fid", "seconds"], ["1000", "1", "30", "2"], ["1000", "4", "12.5", "5"]]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"eval/fid/steps_1", "eval/fid/steps_4"}
    assert events.Scalars("eval/fid/steps_4")[0].value == 12.5
