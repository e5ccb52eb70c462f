"""`shortcut study --dry-run`: the work of each stage counted as the study's caches count it (a continued run
adds its new steps only, a score already written is not redone), and its time from measured rates."""

import pytest

from shortcut_models.cli import main
from shortcut_models.experiments.study_estimate import Rates, Work, planned_work, work_seconds
from shortcut_models.experiments.study_plan import full_plan

FEW, ALL = ("digits", (1, 2, 4)), ("digits", (1, 2, 4, 8, 128))
# flow matching continues its run through the budgets; SoFlow's schedule spans its run: one run per budget
PLAN = full_plan(
    steps=8,
    max_steps=16,
    methods=("flow", "soflow"),
    domains=("digits",),
    seeds=(0,),
    leader_seeds=(1,),
    recipes=("own",),
    meanflow_recipe=False,
    ablation=False,
    finetune=(),
)


def counts(work: Work) -> tuple:
    return work.runs, dict(work.steps), dict(work.scores)


def test_settling_at_the_first_stage_scores_its_largest_budget_once_more():
    assert PLAN.all_budgets() == (2, 4, 8)
    first, seeds = planned_work(PLAN, grows=False)
    # flow: one run of 8 steps scored at 2, 4 and 8; SoFlow: runs of 2, 4 and 8 steps; the budget of 8 is scored
    # at few step counts while it may double, then at all of them once the study stops there
    assert counts(first) == (4, {("digits", "flow"): 8, ("digits", "soflow"): 14}, {FEW: 6, ALL: 2})
    assert counts(seeds) == (4, {("digits", "flow"): 8, ("digits", "soflow"): 14}, {FEW: 4, ALL: 2})


def test_a_doubling_adds_only_the_new_steps_and_scores():
    first, doubled, seeds = planned_work(PLAN, grows=True)
    assert counts(first) == (4, {("digits", "flow"): 8, ("digits", "soflow"): 14}, {FEW: 6})
    # flow continues from 8 to 16 steps; SoFlow trains a new run of 16; only the budget of 16 is scored
    assert counts(doubled) == (2, {("digits", "flow"): 8, ("digits", "soflow"): 16}, {ALL: 2})
    # the extra seed goes through both stages: its flow run counted at each
    assert counts(seeds) == (6, {("digits", "flow"): 16, ("digits", "soflow"): 30}, {FEW: 6, ALL: 2})


def test_time_is_steps_at_the_measured_step_times_cost_model_plus_scores():
    work = Work("w", steps={("digits", "flow"): 100, ("digits", "imf"): 10}, scores={FEW: 2, ALL: 1})
    rates = Rates(step={"digits": 0.05}, score_fixed={"digits": 2.0}, score_per_step={"digits": 0.1})
    expected = 100 * 0.05 + 10 * 0.05 * 1.5 + 2 * (2.0 + 0.1 * 7) + (2.0 + 0.1 * 143)
    assert work_seconds(work, rates, {"flow": 1.0, "imf": 1.5}) == pytest.approx(expected)


def test_the_dry_run_prints_the_stages_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["study", "--quick", "--full", "--max-steps", "16", "--methods", "flow,soflow", "--out", str(out)]
    assert main([*argv, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "a dry run (nothing is trained or written)" in text and not out.exists()
    # --quick: a first stage of 4 steps, doubled to 8 and 16 while the answer moves
    assert "If the answer settles at 4 steps: about" in text and "If the budget doubles up to 16 steps" in text
    assert "- main runs to 16 steps: " in text and "a flow-matching step" in text
