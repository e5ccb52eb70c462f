"""`shortcut study`: every stage runs and resumes, the report holds every section; its goals and advice."""

import json

import pytest
import torch

from shortcut_models.cli import main
from shortcut_models.experiments.study import METHODS
from shortcut_models.experiments.study_report import advice, goals, ranking


def test_goals_ranking_and_advice():
    fd = {
        "flow": {1: 300.0, 2: 100.0, 4: 40.0, 128: 10.0},
        "shortcut": {1: 30.0, 2: 25.0, 4: 20.0, 128: 12.0},
        "meanflow": {1: 19.0, 2: 26.0, 4: 30.0, 128: 14.0},
    }
    costs = {
        "flow": {"ratio": 1.0, "model": 1.0},
        "shortcut": {"ratio": 1.2, "model": 1.083},
        "meanflow": {"ratio": 1.5, "model": 1.167},
    }
    assert ranking(fd, 1) == ["meanflow", "shortcut", "flow"]
    met = {text: ok for text, ok, _ in goals(fd, costs)}
    assert met == {
        "the best one-step model within 2x of flow matching at 128 steps": True,
        "MeanFlow beats flow matching at 1, 2 and 4 steps": True,
        "shortcut beats flow matching at 1, 2 and 4 steps": True,
        "every objective's step costs at most 1.15x its cost model": False,  # MeanFlow 1.29x
    }
    lines = advice(fd, list(fd), [1, 2, 128])
    assert lines[0] == "- With 1 step: use **MeanFlow**."
    assert lines[1] == "- With 2 steps: use **shortcut** (MeanFlow within 5%)."
    assert lines[2] == "- With 128 steps: use **flow matching**."


@pytest.mark.slow  # every stage of the study, at a tiny budget
def test_quick_study_writes_the_whole_report_and_resumes(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "study"
    assert main(["study", "--quick", "--quiet", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for heading in (
        "## Fréchet distance by number of sampling steps",
        "## Precision and recall",
        "## Ranking and advice",
        "## MeanFlow against shortcut",
        "## Training cost per step",
        "## Samples from the same noise",
        "## Goals",
    ):
        assert heading in report, heading
    methods = json.loads((out / "plan.json").read_text())["methods"]
    assert len(methods) == len(METHODS) == 11 and all(
        f"| {m} |" not in report for m in methods if "-" in m
    )  # titles, not keys
    for m in methods:
        rows = json.loads((out / "eval" / f"{m}.json").read_text())["rows"]
        assert [r["steps"] for r in rows] == [1, 2, 4, 8, 128]
        assert all(0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 for r in rows)
    for image in ("fd_vs_steps.png", "grids.png"):
        assert (out / image).read_bytes()[:4] == b"\x89PNG"
    # a rerun skips every finished stage
    before = {f: (out / f).read_text() for f in ("train_seconds.json", "timing.json", "eval/meanflow.json")}
    assert main(["study", "--quick", "--quiet", "--out", str(out)]) == 0
    assert before == {f: (out / f).read_text() for f in before}


def test_bad_study_arguments_exit_2(capsys):
    assert main(["study", "--steps", "0"]) == 2
    assert "positive integer" in capsys.readouterr().err
