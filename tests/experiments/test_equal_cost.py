"""The ranking at equal training cost: each method's budget at flow matching's cost, its FD read off the budget
curve (linear in log-budget, never extrapolated), from a synthetic scores table."""

import math

import pytest
from fixtures.scores import score_rows

from shortcut_models.experiments.equal_cost import (
    at_budget,
    equal_cost_budget,
    equal_cost_section,
    log_interpolate,
)
from shortcut_models.experiments.study_plan import StudyPlan
from shortcut_models.experiments.study_scores import Scores

METHODS = ("flow", "shortcut", "consistency-distillation", "meanflow", "esc", "imf")
PLAN = StudyPlan(steps=1000, budgets=(250, 500), methods=METHODS, domains=("digits",))
# measured cost per step against flow matching (ratio) and the cost model's prediction (model)
COSTS = {
    "flow": {"ratio": 1.0, "model": 1.0},
    "shortcut": {"ratio": 1.5, "model": 1.08},  # equal cost at 666.7 steps: between 500 and 1,000
    "consistency-distillation": {"ratio": 1.2, "model": 1.67},  # its teacher alone costs 1,000 steps
    "meanflow": {"ratio": 2.0, "model": 1.17},  # equal cost at 500 steps: a scored budget
    "esc": {"ratio": 8.0, "model": 1.17},  # 125 steps: below the smallest scored budget
    "imf": {"ratio": 0.5, "model": 1.67},  # 2,000 steps: above the largest
}
# FD at 1 / 2 / 4 steps per budget (seed offsets 0, +0.5, -0.5)
FD = {
    "flow": {250: 300.0, 500: 200.0, 1000: 100.0},
    "shortcut": {250: 80.0, 500: 40.0, 1000: 20.0},
    "consistency-distillation": {250: 15.0, 500: 12.0, 1000: 10.0},
    "meanflow": {250: 60.0, 500: 30.0, 1000: 25.0},
    "esc": {250: 50.0, 500: 45.0, 1000: 40.0},
    "imf": {250: 70.0, 500: 35.0, 1000: 9.0},
}


def rows(fd=FD, budgets=(250, 500, 1000)):
    """FD at 1, 2 and 4 steps of ``fd[method][budget]``, halved at each doubling of the steps, three seeds."""
    return [
        r
        for b in budgets
        for r in score_rows({m: {1: fd[m][b], 2: 0.5 * fd[m][b], 4: 0.25 * fd[m][b]} for m in fd}, budget=b)
    ]


def test_equal_cost_budget_counts_the_step_cost_and_the_teacher():
    assert equal_cost_budget(COSTS, PLAN, "flow") == 1000
    assert equal_cost_budget(COSTS, PLAN, "shortcut") == pytest.approx(1000 / 1.5)
    assert equal_cost_budget(COSTS, PLAN, "meanflow") == pytest.approx(500)
    assert equal_cost_budget(COSTS, PLAN, "consistency-distillation") == 0  # the teacher run used it all
    slower_flow = {**COSTS, "flow": {"ratio": 2.0, "model": 1.0}}  # costs in flow's units: only ratios count
    assert equal_cost_budget(slower_flow, PLAN, "meanflow") == pytest.approx(1000)


def test_log_interpolation_between_scored_budgets_and_nothing_outside():
    budgets, values = [250, 500, 1000], [80.0, 40.0, 20.0]
    assert log_interpolate(budgets, values, 500) == 40.0
    assert log_interpolate(budgets, values, 1000) == 20.0 and log_interpolate(budgets, values, 250) == 80.0
    # halfway in log-budget between 500 and 1,000 (707.1 steps): halfway in FD
    assert log_interpolate(budgets, values, 500 * math.sqrt(2)) == pytest.approx(30.0)
    assert log_interpolate(budgets, values, 1000 / 1.5) == pytest.approx(40.0 - 20.0 * math.log2(4 / 3))
    assert log_interpolate(budgets, values, 249.0) is None and log_interpolate(budgets, values, 1001.0) is None
    assert log_interpolate(budgets, values, 0.0) is None
    assert log_interpolate([1000], [5.0], 1000.0) == 5.0 and log_interpolate([1000], [5.0], 500.0) is None


def test_fd_at_a_budget_is_read_per_seed():
    scores = Scores(rows())
    # shortcut at 666.7 steps, 1 step: 40 - 20 log2(4/3) per seed, each seed shifted by its offset
    expected = 40.0 - 20.0 * math.log2(4 / 3)
    assert at_budget(scores, PLAN, "shortcut", 1, 1000 / 1.5) == pytest.approx(
        [expected, expected + 0.5, expected - 0.5]
    )
    assert at_budget(scores, PLAN, "shortcut", 4, 1000 / 1.5) == pytest.approx(
        [expected / 4, expected / 4 + 0.5, expected / 4 - 0.5]
    )
    assert at_budget(scores, PLAN, "imf", 1, 2000.0) is None


def test_equal_cost_section_ranks_what_it_can_read_and_says_what_it_cannot():
    lines = equal_cost_section(Scores(rows()), PLAN, COSTS)
    table = {line.split(" | ")[0]: line for line in lines if line.startswith("| ")}
    shortcut = 40.0 - 20.0 * math.log2(4 / 3)
    assert table["| flow matching"] == (
        "| flow matching | 1.00 / 1.00 | 1,000 steps | 100.00 ± 1.24 | 50.00 ± 1.24 | 25.00 ± 1.24 |"
    )
    assert table["| shortcut"].startswith(f"| shortcut | 1.50 / 1.08 | 667 steps | {shortcut:.2f} ± 1.24 |")
    assert table["| MeanFlow"].startswith("| MeanFlow | 2.00 / 1.17 | 500 steps | 30.00 ± 1.24 | 15.00 ± 1.24 |")
    assert table["| consistency distillation"].startswith(
        "| consistency distillation | 1.20 / 1.67 | none (the teacher run alone costs as much) |"
    )
    for m, budget, where in (("ESC", "125 steps", "below the smallest"), ("iMF", "2,000 steps", "above the largest")):
        assert table[f"| {m}"].endswith(f"| {budget} | " + " | ".join([f"{where} scored budget"] * 3) + " |")
    one_step = next(line for line in lines if line.startswith("- 1 step:"))
    # MeanFlow at its 500 steps (30.0) ahead of shortcut at its 667 (31.70; Welch p 0.014, last of the three
    # Holm steps: not multiplied), both far ahead of flow matching at 1,000 (100)
    assert one_step == (
        f"- 1 step: MeanFlow (30.00 ± 1.24) > shortcut ({shortcut:.2f} ± 1.24) > flow matching (100.00 ± 1.24)"
    )
    assert not any("iMF (" in line or "ESC (" in line for line in lines if line.startswith("- "))


def test_with_one_budget_the_section_says_it_needs_the_full_studys_budgets():
    plan = StudyPlan(steps=1000, methods=METHODS, domains=("digits",))
    lines = equal_cost_section(Scores(rows(budgets=(1000,))), plan, COSTS)
    table = [line for line in lines if line.startswith("| ")]
    assert table[0] == "| method | cost per step (measured / model) | budget at equal cost |"  # no FD columns
    assert "| shortcut | 1.50 / 1.08 | 667 steps |" in table and "| iMF | 0.50 / 1.67 | 2,000 steps |" in table
    tiny = StudyPlan(steps=4, methods=("flow", "meanflow"), domains=("digits",))
    tiny_costs = {"flow": COSTS["flow"], "meanflow": {"ratio": 0.9, "model": 1.17}}
    assert "| MeanFlow | 0.90 / 1.17 | 4.4 steps |" in equal_cost_section(Scores([]), tiny, tiny_costs)
    assert lines[-1] == (
        "Fewer than two methods can be read at equal cost, so there is no ranking. This study scored one budget; "
        "`shortcut study --full` scores several, so the FD at most methods' equal-cost budgets can be read there."
    )
