"""The trainer's logs: metrics.csv always, TensorBoard and Weights & Biases on request; a resumed run
continues its own W&B run."""

import csv
import json

from shortcut_models.config import build_config
from shortcut_models.training import Trainer

TOY = ["model_args.width=16", "model_args.depth=1", "batch_size=16", "log_every=2", "ckpt_every=2", "sample_steps=[1]"]


def toy(*extra):
    return build_config("checkerboard", None, None, [*TOY, *extra])


def test_a_resumed_run_continues_its_wandb_run(tmp_path, wandb_offline, wandb_history, wandb_next_second):
    run = tmp_path / "run"
    Trainer(toy("steps=4", "logger=tensorboard,wandb"), run, progress=False).run()
    first = json.loads((run / "wandb.json").read_text())
    wandb_next_second()
    Trainer(toy("steps=6", "logger=tensorboard,wandb"), run, progress=False).run()  # resumes at step 4
    assert json.loads((run / "wandb.json").read_text())["id"] == first["id"]
    history = wandb_history(wandb_offline)
    assert {run_id for run_id, _, _ in history} == {first["id"]}
    logged = [row["_step"] for _, _, row in history if "train/loss" in row]
    assert logged == [2, 4, 6]
    with open(run / "metrics.csv", newline="") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [2, 4, 6]
    assert any((run / "tensorboard").iterdir())


def test_logger_none_writes_only_the_csv(tmp_path):
    run = tmp_path / "run"
    Trainer(toy("steps=2", "logger=none"), run, progress=False).run()
    assert (run / "metrics.csv").exists()
    assert not (run / "tensorboard").exists() and not (run / "wandb.json").exists()
