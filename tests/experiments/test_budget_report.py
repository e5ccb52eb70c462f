"""The study report's budget sections, from synthetic scores: where the answer stopped moving or why it still
moves, and the checkerboard's table and figure at its own budgets."""

from fixtures.scores import score_rows

from shortcut_models.experiments.budget_report import checkerboard_budget_section, settling_lines
from shortcut_models.experiments.study_figures import toy_budget_figure
from shortcut_models.experiments.study_plan import StudyPlan
from shortcut_models.experiments.study_scores import Scores

FD = {"flow": 300.0, "shortcut": 30.0, "meanflow": 20.0, "imf": 20.5, "consistency-distillation": 60.0}
PLAN = StudyPlan(steps=1000, budgets=(500,), methods=tuple(FD), domains=("digits",), max_steps=4000)


def rows(table: dict[str, float], budget: int) -> list[dict]:
    """FD rows of ``table[method]`` (the same at 1, 2 and 4 steps) at ``budget``, three seeds."""
    return score_rows({m: dict.fromkeys((1, 2, 4), v) for m, v in table.items()}, budget=budget)


def test_the_report_says_where_the_answer_stopped_moving_or_why_it_still_moves():
    steady = Scores(rows(FD, 500) + rows({m: 0.95 * v for m, v in FD.items()}, 1000))
    assert settling_lines(steady, PLAN)[0].startswith("**The answer stopped moving at 1,000 steps**: from 500")
    later = {m: 0.95 * v for m, v in FD.items()}
    later["imf"] = 0.88 * FD["imf"]
    lines = settling_lines(Scores(rows(FD, 500) + rows(later, 1000)), PLAN)
    assert (
        lines[0]
        == "**The answer still moves at 1,000 steps (the largest the study allows: --max-steps 4,000).** From 500 to 1,000 steps:"
    )
    assert "- 1 step: iMF still improving (12% lower FD)." in lines


def test_the_checkerboard_gets_its_own_budget_table_and_figure(tmp_path):
    """SWD at 1 / 2 / 4 steps per checkerboard budget, 'plateau' where it improved by less than 10% at 1 step
    over the budget before the largest; the figure draws both step counts."""

    swd = {"flow": 0.2, "shortcut": 0.05}
    later = {"flow": 0.1, "shortcut": 0.048}  # flow halves; shortcut improves by 4%: a plateau
    tiny = (0.0, 0.001, -0.001)
    toy = [
        r
        for b, table in ((500, swd), (1000, later))
        for r in score_rows(
            {m: dict.fromkeys((1, 2, 4), v) for m, v in table.items()},
            budget=b,
            domain="checkerboard",
            key="swd",
            spread=tiny,
        )
    ]
    plan = StudyPlan(toy_steps=1000, toy_budgets=(500,), methods=("flow", "shortcut"), domains=("checkerboard",))
    lines = checkerboard_budget_section(Scores(toy), plan, tmp_path / "swd_vs_budget.png")
    table = [line for line in lines if line.startswith("| ")]
    assert table[0] == "| method | 500 steps: SWD at 1 / 2 / 4 | 1,000 steps: SWD at 1 / 2 / 4 |"
    assert table[1] == "| flow matching | 0.2000 / 0.2000 / 0.2000 | 0.1000 / 0.1000 / 0.1000 |"
    assert table[2] == "| shortcut | 0.0500 / 0.0500 / 0.0500 | 0.0480 / 0.0480 / 0.0480 (plateau) |"
    assert "![SWD against budget](swd_vs_budget.png)" in lines
    assert checkerboard_budget_section(Scores(toy), StudyPlan(methods=("flow",), domains=("checkerboard",)), None) == []
    path = toy_budget_figure(tmp_path / "swd_vs_budget.png", Scores(toy), plan)
    assert path.stat().st_size > 10_000
