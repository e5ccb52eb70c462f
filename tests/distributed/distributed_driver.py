"""Scenarios for tests/distributed/test_distributed.py, run by ``torchrun --nproc_per_node=2`` in one launch.

Usage: python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed/distributed_driver.py WORK SETTINGS_JSON

The process group is joined once here; each ``shortcut`` command below finds it and keeps it (as
it would under a launcher that set it up). Every rank writes WORK/report_RANK.json.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from shortcut_models import checkpoints as ckpt
from shortcut_models import distributed
from shortcut_models.cli import main
from shortcut_models.config import build_config
from shortcut_models.errors import TrainingDiverged
from shortcut_models.training import Trainer


def command(argv: list[str]) -> None:
    code = main([str(a) for a in argv])
    if code != 0:
        raise SystemExit(f"rank {distributed.rank()}: {argv[0]} exited {code}")


def stop_on_signal(work: Path, tiny: list[str], rank: int) -> dict:
    """Rank 1 alone receives SIGTERM after step 2: every rank must stop there and save once."""
    trainer = Trainer(
        build_config("checkerboard", None, None, [*tiny, "steps=1000", "log_every=1"]), work / "signal", progress=False
    )

    def on_log(step: int, row: dict) -> None:
        if rank == 1 and step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    final = trainer.run(on_log)
    return {"final": final.name, "step": trainer.step, "signal": trainer._stop_signal}


def nan_on_one_rank(work: Path, tiny: list[str], rank: int) -> dict:
    """Rank 1's rows of step 3 are NaN: every rank must raise, the step-2 checkpoint stays the latest."""
    trainer = Trainer(
        build_config("checkerboard", None, None, [*tiny, "steps=10", "log_every=1", "ckpt_every=2"]),
        work / "nan",
        progress=False,
    )
    real = trainer.source.batch

    def poisoned(step, batch_size, seed):
        x, y = real(step, batch_size, seed)
        return (x * float("nan"), y) if step == 3 and rank == 1 else (x, y)

    trainer.source.batch = poisoned
    try:
        trainer.run()
    except TrainingDiverged:
        return {"raised": True, "latest": ckpt.latest_checkpoint(work / "nan").name}
    return {"raised": False}


def run(work: Path, settings: dict) -> dict:
    tiny, digits = settings["tiny"], settings["digits_ckpt"]
    rank = distributed.rank()
    train = ["train", "--preset", "checkerboard", "--quiet"]
    command([*train, "--objective", "flow", "--out", work / "flow", *tiny, "steps=4"])
    command([*train, "--out", work / "resumed", *tiny, "steps=2"])
    command([*train, "--out", work / "resumed", *tiny, "steps=4"])
    command([*train, "--out", work / "mixed", *tiny, "steps=4"])  # its first 2 steps ran in one process
    command([*train, "--out", work / "accum", *tiny, "steps=4", "batch_per_gpu=8"])  # 2 micro-batches per process
    command(
        [
            "eval",
            "--ckpt",
            digits,
            "--steps",
            "1,2",
            "--num",
            settings["num"],
            "--batch-size",
            "8",
            "--save-samples",
            "--out",
            work / "eval",
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    command(
        [
            "sample",
            "--ckpt",
            digits,
            "--steps",
            "2",
            "--num",
            settings["num"],
            "--out",
            work / "sample.npz",
            "--device",
            "cpu",
        ]
    )
    return {
        "rank": rank,
        "world": distributed.world_size(),
        "signal": stop_on_signal(work, tiny, rank),
        "nan": nan_on_one_rank(work, tiny, rank),
    }


if __name__ == "__main__":
    work_dir = Path(sys.argv[1])
    distributed.init("cpu")
    report = run(work_dir, json.loads(sys.argv[2]))
    (work_dir / f"report_{distributed.rank()}.json").write_text(json.dumps(report))
    distributed.cleanup()
