"""`shortcut demo --quick`: every stage runs and the report holds every section (numbers meaningless)."""

import json

import pytest

from shortcut_models.cli import main


@pytest.mark.slow  # every stage of the demo, at a tiny budget
@pytest.mark.usefixtures("one_thread")  # one thread, restored after the module
def test_quick_demo_writes_the_whole_report(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--finetune", "--quiet", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for heading in (
        "## Fréchet distance by number of sampling steps",
        "## During training",
        "## Samples from the same noise",
        "## Training cost",
        "## First question",
        "## Quality goals",
        "## Second question",
    ):
        assert heading in report, heading
    for image in ("eval/metric_vs_steps.png", "fd_vs_training_step.png", "grids.png"):
        assert (out / image).read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "eval" / "metrics.json").read_text())["rows"]
    assert {(r["objective"], r["steps"]) for r in rows} == {
        (o, n) for o in ("flow", "shortcut") for n in (1, 2, 4, 128)
    }
    assert (out / "flow" / "eval.csv").read_text().startswith("step,steps,nfe,num,cfg_scale,fd_digits,fd_digits_floor")
    assert (out / "shortcut" / "eval.png").read_bytes()[:4] == b"\x89PNG"
    assert "flow matching + 1 shortcut steps (25% of scratch)" in report or "25%" in report
    # a rerun skips every finished stage and rewrites the same tables
    before = (out / "eval" / "metrics.json").read_text()
    assert main(["demo", "--quick", "--finetune", "--quiet", "--out", str(out)]) == 0
    assert (out / "eval" / "metrics.json").read_text() == before
