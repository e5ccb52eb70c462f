"""`shortcut demo --quick`: every stage runs and the report holds every section (numbers meaningless)."""

import json

import torch

from shortcut_models.cli import main
from shortcut_models.experiments.report import compare_at, goals


def test_quick_demo_writes_the_whole_report(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--finetune", "--quiet", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for heading in ("## Fréchet distance by number of sampling steps", "## During training", "## Samples from the same noise",
                    "## Training cost", "## First question", "## Quality goals", "## Second question"):
        assert heading in report, heading
    for image in ("eval/metric_vs_steps.png", "fd_vs_training_step.png", "grids.png"):
        assert (out / image).read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "eval" / "metrics.json").read_text())["rows"]
    assert {(r["objective"], r["steps"]) for r in rows} == {(o, n) for o in ("flow", "shortcut") for n in (1, 2, 4, 128)}
    assert (out / "flow" / "tracking.csv").read_text().startswith("train_step,steps,fd_digits")
    assert "flow matching + 1 shortcut steps (25% of scratch)" in report or "25%" in report
    # a rerun skips every finished stage and rewrites the same tables
    before = (out / "eval" / "metrics.json").read_text()
    assert main(["demo", "--quick", "--finetune", "--quiet", "--out", str(out)]) == 0
    assert (out / "eval" / "metrics.json").read_text() == before


def test_verdicts_and_goals():
    fd = {"flow": {1: 100.0, 2: 50.0, 4: 20.0, 128: 5.0}, "shortcut": {1: 9.0, 2: 8.0, 4: 7.0, 128: 5.2}}
    assert compare_at(fd, 128) == "equal" and compare_at(fd, 1) == "better"
    met = {text: ok for text, ok, _ in goals(fd)}
    assert met == {
        "shortcut at 1 step within 2x of flow matching at 128 steps": True,
        "shortcut better than flow matching at 1, 2 and 4 steps": True,
        "shortcut at 128 steps within 1.25x of flow matching at 128 steps": True,
    }
    fd["shortcut"][128] = 7.0
    assert compare_at(fd, 128) == "worse" and not goals(fd)[2][1]
