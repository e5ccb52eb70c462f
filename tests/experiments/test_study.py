"""`shortcut study`: rankings that say which gaps are significant, the short answer, the recipe table and the
goals from synthetic scores; every stage runs and resumes at a tiny budget."""

import json

import pytest
from fixtures.scores import SPREAD, score_rows

from shortcut_models.cli import main
from shortcut_models.experiments.budget_report import budget_section
from shortcut_models.experiments.goals import goals
from shortcut_models.experiments.study_answers import read_answers
from shortcut_models.experiments.study_figures import budget_figure, training_minutes
from shortcut_models.experiments.study_plan import StudyPlan
from shortcut_models.experiments.study_report import ranking_text, recipe_section, short_answer
from shortcut_models.experiments.study_scores import Scores, column, leaders, ordered, reversals
from shortcut_models.metrics.seed_intervals import seeds_to_separate, welch_p

SEEDS = (0, 1, 2)


BUDGET = StudyPlan().steps


def rows_of(table, domain="digits", recipe="own", budget=BUDGET, key="fd_digits", spread=SPREAD):
    """Rows with ``table[method][steps]`` as the mean over three seeds (seed offsets ``spread``)."""
    return score_rows(table, domain=domain, recipe=recipe, budget=budget, key=key, spread=spread, train_seconds=60.0)


FD = {
    "flow": {1: 300.0, 2: 100.0, 4: 40.0, 128: 10.0},
    "shortcut": {1: 30.0, 2: 25.0, 4: 20.0, 128: 12.0},
    "meanflow": {1: 29.8, 2: 15.0, 4: 12.0, 128: 9.0},
    "consistency-distillation": {1: 10.0, 2: 14.8, 4: 12.2, 128: 30.0},
}


def test_rankings_mark_significant_gaps_and_ties():
    scores = Scores(rows_of(FD))
    ranked = ordered(scores, "fd_digits", "digits", list(FD), "own", BUDGET, 1)
    assert [(m, ahead) for m, _, ahead in ranked] == [
        ("consistency-distillation", True),
        ("meanflow", False),  # 29.8 vs 30.0 with the same seed spread: a tie
        ("shortcut", True),
        ("flow", False),
    ]
    assert ranking_text(scores, "fd_digits", "digits", list(FD), "own", BUDGET, 1) == (
        "consistency distillation (10.00 ± 1.24) > MeanFlow (29.80 ± 1.24) ≈ shortcut (30.00 ± 1.24) > "
        "flow matching (300.00 ± 1.24)"
    )
    assert leaders(scores, "fd_digits", "digits", list(FD), "own", BUDGET, 2) == [
        "consistency-distillation",
        "meanflow",
    ]
    assert leaders(scores, "fd_digits", "digits", ["flow", "shortcut", "meanflow"], "own", BUDGET, 1) == [
        "meanflow",
        "shortcut",
    ]


CLOSE = {"meanflow": {1: 10.0}, "shortcut": {1: 11.33}, "flow": {1: 12.55}}  # neighbours 1.33 and 1.22 apart


def test_holm_correction_over_a_column_turns_marginal_gaps_into_ties():
    scores = Scores(rows_of(CLOSE))
    values = column(scores, "fd_digits", "digits", list(CLOSE), "own", BUDGET, 1)
    # each neighbouring gap alone is significant (p 0.031 and 0.040); times 2 under Holm (3 pairs, the far
    # pair first at 0.0033 x 3) they are not
    assert 0.025 < welch_p(values["meanflow"], values["shortcut"]) < 0.05
    assert 0.025 < welch_p(values["shortcut"], values["flow"]) < 0.05
    ranked = ordered(scores, "fd_digits", "digits", list(CLOSE), "own", BUDGET, 1)
    assert [(m, ahead) for m, _, ahead in ranked] == [("meanflow", False), ("shortcut", False), ("flow", False)]
    assert leaders(scores, "fd_digits", "digits", list(CLOSE), "own", BUDGET, 1) == ["meanflow", "shortcut"]
    # two methods alone are one test, uncorrected; judged within the column's pairs, the correction applies
    pair = ["meanflow", "shortcut"]
    assert leaders(scores, "fd_digits", "digits", pair, "own", BUDGET, 1) == ["meanflow"]
    assert leaders(scores, "fd_digits", "digits", pair, "own", BUDGET, 1, family=list(CLOSE)) == pair


def test_short_answer_says_how_many_seeds_would_separate_tied_leaders():
    plan = StudyPlan(methods=("flow", "shortcut", "meanflow"), domains=("digits",))
    lines = short_answer(Scores(rows_of(CLOSE)), plan)
    assert "tied within seed noise with shortcut" in lines[0] and "Holm's correction" in lines[2]
    holm_n = seeds_to_separate(11.33 - 10.0, 0.5, 0.5, alpha=0.05 / 3)
    single_n = seeds_to_separate(11.33 - 10.0, 0.5, 0.5)
    assert single_n < holm_n < 10  # a gap of 2.7 seed spreads: a few seeds suffice
    assert lines[-1] == (
        "- 1 step: MeanFlow (10.00 ± 1.24) and shortcut (11.33 ± 1.24): "
        f"{holm_n} seeds each under the correction over this step count's 3 pairs (a p-value below 0.05 / 3, "
        f"enough whatever the other pairs show); {single_n} seeds each for this one comparison alone at p < 0.05."
    )
    # separated leaders: no such line
    far = {"meanflow": {1: 10.0}, "shortcut": {1: 20.0}, "flow": {1: 30.0}}
    assert not any("seeds each" in line for line in short_answer(Scores(rows_of(far)), plan))


def test_short_answer_names_ties_and_says_how_sure():
    plan = StudyPlan(methods=tuple(FD), domains=("digits",))
    lines = short_answer(Scores(rows_of(FD)), plan)
    assert lines[0].startswith("- **1 step: consistency distillation** (needs a flow-matching run first); without a")
    assert "without a teacher run: **MeanFlow** (or shortcut)" in lines[0] and lines[0].endswith("How sure: sure.")
    assert "tied within seed noise with MeanFlow" in lines[1] and lines[1].endswith("How sure: uncertain.")
    # a second metric that disagrees makes the answer uncertain
    second = rows_of({m: dict.fromkeys(v, 1.0 if m == "flow" else 5.0) for m, v in FD.items()}, key="nn1_accuracy")
    rows = rows_of(FD)
    for row, other in zip(rows, second):
        row["nn1_accuracy"] = other["nn1_accuracy"]
    lines = short_answer(Scores(rows), plan)
    assert "Not among the best under the second metric" in lines[0] and lines[0].endswith("How sure: uncertain.")


def test_recipe_section_and_goals():
    common = {m: {n: v * (0.5 if m == "flow" else 1.0) for n, v in by.items()} for m, by in FD.items()}
    scores = Scores(rows_of(FD) + rows_of(common, recipe="common"))
    plan = StudyPlan(methods=tuple(FD), domains=("digits",))
    table = recipe_section(scores, plan)
    flow_common = next(line for line in table if line.startswith("| flow matching | common"))
    assert flow_common.endswith("| better / better / better |")
    assert next(line for line in table if line.startswith("| shortcut | common")).endswith("| tie / tie / tie |")
    met = {text: (ok, numbers) for text, ok, numbers in goals(scores, plan, {})}
    assert met["the recipe effect measured for flow matching at 128 steps"][1] == (
        "common recipe 5.00 ± 1.24 vs own 10.00 ± 1.24"
    )
    ok, numbers = met[
        "the best one-step model without a teacher within 2x of flow matching at 128 steps, both under the common "
        "recipe"
    ]
    assert not ok and numbers == "MeanFlow 29.80 ± 1.24 vs 2 x 5.00 = 10.00"


@pytest.mark.slow  # every stage of the study at a tiny budget, two runs at a time, then a rerun that redoes nothing
@pytest.mark.usefixtures("one_thread")  # one thread, restored after the module
def test_quick_study_writes_the_whole_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "study"
    methods = "consistency-distillation,meanflow"  # with flow matching: a teacher run, a JVP, the product path
    assert main(["study", "--quick", "--quiet", "--jobs", "2", "--methods", methods, "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for heading in (
        "## Short answer",
        "## Recipes",
        "## Digits: Fréchet distance, own recipes",
        "## Rankings",
        "## Method against recipe",
        "## Checkerboard: sliced Wasserstein distance, own recipes",
        "## Equal training cost",
        "## Training cost per step",
        "## Samples from the same noise",
        "## Goals",
    ):
        assert heading in report, heading
    assert "## The two questions" not in report  # both compare shortcut, not among these methods: no empty section
    assert "- Does shortcut training help many-step sampling? Not asked here" in report  # the short answer's end
    answers = read_answers(out / "answers.json").answers  # the answers beside the report, plain JSON
    assert answers.methods == ("flow", "consistency-distillation", "meanflow") and set(answers.leaders) == {1, 2, 4}
    plan = json.loads((out / "plan.json").read_text())
    for domain in ("digits", "checkerboard"):
        for m in plan["methods"]:
            for seed in plan["seeds"]:
                common = domain == "digits" and m in plan["common_methods"]
                for recipe in ("own", "common") if common else ("own",):
                    budget = plan["steps"] if domain == "digits" else plan["toy_steps"]
                    file = out / "scores" / domain / f"{m}-{recipe}-seed{seed}" / f"{budget}.json"
                    rows = json.loads(file.read_text())["rows"]
                    assert [r["steps"] for r in rows] == [1, 2, 4, 8, 128]
    for image in ("fd_vs_steps.png", "grids.png"):
        assert (out / image).read_bytes()[:4] == b"\x89PNG"
    before = {f: f.read_text() for f in (out / "scores").rglob("*.json")} | {out / "timing.json": ""}
    before[out / "timing.json"] = (out / "timing.json").read_text()
    assert main(["study", "--quick", "--quiet", "--jobs", "1", "--methods", methods, "--out", str(out)]) == 0
    assert before == {f: f.read_text() for f in before}
    # moved elsewhere, the study still reads its scores (where the teachers lie is not compared) ...
    moved = out.rename(tmp_path / "moved")
    assert main(["study", "--quick", "--quiet", "--jobs", "1", "--methods", methods, "--out", str(moved)]) == 0
    # ... but not the scores of a run whose checkpoint was trained with other settings than the plan's
    run = moved / "runs" / "digits" / "consistency-distillation-own-seed0"
    (config_file,) = run.glob("checkpoints/step_*/config.json")
    config = json.loads(config_file.read_text())
    config["training"]["lr"] *= 2
    config_file.write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["study", "--quick", "--quiet", "--jobs", "1", "--methods", methods, "--out", str(moved)]) == 2
    err = capsys.readouterr().err
    assert f"{run} holds a run with a different config (lr:" in err and len(err.strip().splitlines()) == 1
    # ... nor those of a checkpoint of another release (refused as it is, not set aside)
    config["training"]["lr"] /= 2
    config_file.write_text(json.dumps({**config, "format_version": 2}))
    assert main(["study", "--quick", "--quiet", "--jobs", "1", "--methods", methods, "--out", str(moved)]) == 2
    err = capsys.readouterr().err
    assert f"{config_file} is a checkpoint of format 2, written by" in err and len(err.strip().splitlines()) == 1
    assert json.loads(config_file.read_text())["format_version"] == 2


def test_bad_study_arguments_exit_2(capsys):
    assert main(["study", "--steps", "0"]) == 2
    assert "positive integer" in capsys.readouterr().err
    assert main(["study", "--jobs", "0"]) == 2


def test_training_minutes_come_from_the_measured_step_time_and_count_the_teacher():
    costs = {"flow": {"ms": 50.0}, "meanflow": {"ms": 80.0}, "consistency-distillation": {"ms": 60.0}}
    assert training_minutes(costs, "meanflow", 1500, teacher_steps=1000) == pytest.approx(1500 * 80 / 60e3)
    # a distillation run also pays for the flow-matching teacher it starts from
    assert training_minutes(costs, "consistency-distillation", 500, 1000) == pytest.approx(
        (500 * 60 + 1000 * 50) / 60e3
    )


def test_budget_figure_draws_every_budget(tmp_path):
    plan = StudyPlan(steps=400, budgets=(100, 200), methods=("flow", "consistency-distillation", "meanflow"))
    rows = [r for b in plan.all_budgets() for r in rows_of(FD, budget=b)]
    costs = {m: {"ms": 50.0} for m in plan.methods}
    path = budget_figure(tmp_path / "budget.png", Scores(rows), plan, costs)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_a_swap_between_the_two_largest_budgets_is_reported_and_fails_the_goal():
    plan = StudyPlan(steps=1000, budgets=(500,), methods=tuple(FD), domains=("digits",))
    later = {m: dict(by) for m, by in FD.items()}
    later["consistency-distillation"][1] = 45.0  # at 1 step it falls behind MeanFlow and shortcut beyond noise
    later["meanflow"][2] = 25.0  # at 2 steps MeanFlow falls back to a tie with shortcut: not a swap
    scores = Scores(rows_of(FD, budget=500) + rows_of(later, budget=1000))
    assert reversals(scores, "fd_digits", "digits", plan.methods, "own", (500, 1000), 1) == [
        ("consistency-distillation", "shortcut"),
        ("consistency-distillation", "meanflow"),
    ]
    assert reversals(scores, "fd_digits", "digits", plan.methods, "own", (500, 1000), 2) == []
    lines = budget_section(scores, plan, None)
    # FD at 1 / 2 / 4 steps per budget; 'plateau' where FD at 1 step improved by less than 10%, 'worse' where it
    # rose by 10% or more
    assert "| consistency distillation | 10.0 / 14.8 / 12.2 | 45.0 / 14.8 / 12.2 (worse) |" in lines
    assert "**The answer still moves at 1,000 steps.** From 500 to 1,000 steps:" in lines
    one_step = next(line for line in lines if line.startswith("- 1 step: best at"))
    assert "swapped: consistency distillation ahead of shortcut at 500, behind at 1000, consistency" in one_step
    assert next(line for line in lines if line.startswith("- 2 steps: best at")).endswith("no two methods swap places.")
    met = {text: (ok, numbers) for text, ok, numbers in goals(scores, plan, {})}
    ok, numbers = met["the ranking at 1, 2 and 4 steps is the same at the two largest budgets"]
    assert not ok and numbers == "500 vs 1000 steps: 1 step 2 swaps, 2 steps 0 swaps, 4 steps 0 swaps"
    steady = Scores(rows_of(FD, budget=500) + rows_of(FD, budget=1000))
    assert {t: ok for t, ok, _ in goals(steady, plan, {})}[
        "the ranking at 1, 2 and 4 steps is the same at the two largest budgets"
    ]


def test_a_run_scored_twice_is_refused_not_counted_twice():
    rows = rows_of(FD)
    with pytest.raises(ValueError, match="two scores of one seed"):
        Scores(rows + rows[:1]).mean("fd_digits", "digits", "flow", "own", BUDGET, 1)


def test_the_report_names_the_command_that_wrote_it():
    from pathlib import Path

    from shortcut_models.experiments.study_answers import ComparedWith
    from shortcut_models.experiments.study_plan import full_plan
    from shortcut_models.experiments.study_report import study_command
    from shortcut_models.experiments.study_scores import StudyResults

    def command(plan, compared=None):
        results = StudyResults(Path("runs/s"), plan, Scores([]), {}, None, {}, 0, None, {}, {})
        return study_command(results, compared)

    assert command(StudyPlan()) == "shortcut study --out runs/s"
    compared = ComparedWith(Path("docs/study/full/answers.json"), None)
    assert command(StudyPlan(), compared) == "shortcut study --out runs/s --compare-with docs/study/full/answers.json"
    assert command(full_plan()) == "shortcut study --out runs/s --full"
    grown = full_plan(max_steps=6400, device="cuda", methods=("flow", "imf"))
    assert command(grown) == "shortcut study --out runs/s --full --max-steps 6400 --methods flow,imf --device cuda"
    assert command(StudyPlan(methods=full_plan().methods)) == "shortcut study --out runs/s --methods all"


def test_answers_file_holds_the_largest_budget_the_study_grew_to(tmp_path, monkeypatch):
    """A study that doubled its budget writes the leaders at the grown budget into answers.json, as its report
    does (the full study of 2026-12-07 wrote its first stage's budget and leaders there)."""
    from types import SimpleNamespace

    from shortcut_models.experiments import study, study_plan

    asked = StudyPlan(methods=("flow", "imf", "meanflow"), domains=("digits",), steps=800, max_steps=1600)
    grown = study_plan.grown(asked)
    rows = score_rows({"flow": {1: 900.0}, "imf": {1: 90.0}, "meanflow": {1: 60.0}}, budget=800)
    rows += score_rows({"flow": {1: 800.0}, "imf": {1: 50.0}, "meanflow": {1: 70.0}}, budget=1600)
    results = SimpleNamespace(scores=Scores(rows), plan=grown)
    monkeypatch.setattr(study, "run_plan", lambda out, plan, progress, jobs: results)
    monkeypatch.setattr(study, "write_study_report", lambda results, compare_with: tmp_path / "report.md")
    study.run_study(tmp_path, asked, progress=False)
    answers = read_answers(tmp_path / "answers.json").answers
    assert answers.budget == 1600
    assert [(b.method, b.fd) for b in answers.leaders[1]] == [("imf", 50.0)]
