"""`shortcut demo --quick`: every stage runs through the study's pipeline, the report holds every section
(numbers meaningless), and a rerun redoes nothing."""

import json
from pathlib import Path

import pytest

from shortcut_models.cli import main
from shortcut_models.experiments.demo import DemoPlan, demo_study
from shortcut_models.experiments.study_plan import RECIPES, main_runs, second_stage_runs
from shortcut_models.experiments.study_runs import run_config
from shortcut_models.objectives import FlowMatching


def test_the_demo_is_a_two_method_one_seed_study_at_the_demos_budget():
    plan = demo_study(DemoPlan(overrides=["steps=300", "lr=0.01"], finetune_fractions=(0.5,), seed=3))
    assert (plan.methods, plan.seeds, plan.domains, plan.recipes) == (
        ("flow", "shortcut"),
        (0,),
        ("digits",),
        ("tuned",),
    )
    assert plan.main_recipe == "tuned" and RECIPES["tuned"] == ("target_network=online",)  # the tuned preset's choice
    assert plan.steps == 300 and plan.overrides == ["lr=0.01"]  # the budget is the plan's, not an override
    assert plan.sample_seed == 3 and plan.eval_steps == DemoPlan().eval_steps
    runs = main_runs(plan)
    assert [r.name for r in runs] == ["digits/flow-tuned-seed0", "digits/shortcut-tuned-seed0"]
    assert [r.overrides for r in runs] == [("target_network=online",)] * 2
    assert [(r.name, r.steps, r.overrides) for r in second_stage_runs(plan, "shortcut")] == [
        ("digits/shortcut-tuned-from-flow-50pct-seed0", 150, ("target_network=online",))
    ]
    # the recipe trains shortcut with the online network as target, the flow-matching run as before
    config = run_config(Path("OUT"), plan, runs[1], plan.steps)
    assert config.resolved_objective_args()["target_network"] == "online"
    assert run_config(Path("OUT"), plan, runs[0], plan.steps).resolved_objective_args() == FlowMatching().args()
    assert "eval_every=2000" in plan.tracking and "eval_metric=fd-digits" in plan.tracking


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
        "## Goals",
        "## Second question",
    ):
        assert heading in report, heading
    for image in ("fd_vs_steps.png", "fd_vs_training_step.png", "grids.png"):
        assert (out / image).read_bytes()[:4] == b"\x89PNG"
    for method in ("flow", "shortcut"):
        rows = json.loads((out / "scores" / "digits" / f"{method}-tuned-seed0" / "4.json").read_text())["rows"]
        assert [r["steps"] for r in rows] == [1, 2, 4, 128]
    runs = out / "runs" / "digits"
    header = "step,steps,nfe,num,cfg_scale,fd_digits,fd_digits_floor"
    assert (runs / "flow-tuned-seed0" / "eval.csv").read_text().startswith(header)
    assert (runs / "shortcut-tuned-seed0" / "eval.png").read_bytes()[:4] == b"\x89PNG"
    assert not (runs / "shortcut-tuned-from-flow-25pct-seed0" / "eval.csv").exists()  # fine-tuning: no tracking
    assert "| shortcut fine-tuned 25% (1 step) |" in report
    assert 'targets from the online network (recipe "tuned", the demo\'s tuned choice' in report
    assert "shortcut's own recipe, the paper's, takes the EMA network" in report
    # a rerun skips every finished stage and rewrites the same tables
    before = {f: f.read_text() for f in (out / "scores").rglob("*.json")}
    assert main(["demo", "--quick", "--finetune", "--quiet", "--out", str(out)]) == 0
    assert before == {f: f.read_text() for f in before}
