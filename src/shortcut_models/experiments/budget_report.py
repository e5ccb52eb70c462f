"""The study report's budget sections: FD at 1, 2 and 4 steps per budget with 'plateau' and 'worse' marks,
where the answer stopped moving (or why it still moves), the ranking at the two largest budgets, and the
checkerboard's table at its own budgets."""

from __future__ import annotations

from pathlib import Path

from .budget_growth import PLATEAU, improvement, movement, settled
from .goals import FEW
from .report import steps_label
from .study_plan import StudyPlan, method_title
from .study_scores import Scores, leaders, reversals


def budget_section(scores: Scores, plan: StudyPlan, figure: Path | None) -> list[str]:
    """FD at 1, 2 and 4 steps per budget ('plateau' where it improved by less than 10% over the last doubling,
    'worse' where it rose by 10% or more), where the answer stopped moving, and whether the ranking holds at the
    two largest budgets."""
    lines = budget_table(scores, plan, "fd_digits", "digits") + [
        "",
        f"'plateau': FD at 1 step improved by less than {PLATEAU:.0%} over the last doubling of the budget; "
        f"'worse': it rose by {PLATEAU:.0%} or more.",
        "",
    ]
    if figure is not None:
        lines += [f"![FD against budget]({figure.name})", ""]
    return lines + settling_lines(scores, plan) + ranking_change_lines(scores, plan)


def budget_table(scores: Scores, plan: StudyPlan, key: str, domain: str) -> list[str]:
    """Score ``key`` at 1, 2 and 4 steps per budget of ``domain`` under the main recipe, one row per method; after
    the largest, 'plateau' where the score at 1 step improved by less than PLATEAU over the budget before, 'worse'
    where it rose by PLATEAU or more."""
    budgets, recipe, name = plan.domain_budgets(domain), plan.main_recipe, BUDGET_NAME[key]
    lines = [
        "| method | " + " | ".join(f"{b:,} step{'' if b == 1 else 's'}: {name} at 1 / 2 / 4" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for m in plan.methods:
        cells = [_budget_cell(scores, m, recipe, b, key, domain) for b in budgets]
        gain = improvement(scores, m, budgets[-2:], 1, recipe, key, domain) if len(budgets) > 1 else None
        if gain is not None and gain < PLATEAU:
            cells[-1] += " (worse)" if gain <= -PLATEAU else " (plateau)"
        lines.append(f"| {method_title(m)} | " + " | ".join(cells) + " |")
    return lines


BUDGET_NAME = {"fd_digits": "FD", "swd": "SWD"}
BUDGET_DECIMALS = {"fd_digits": 1, "swd": 4}  # decimals: FD is in the tens to thousands, SWD below 1


def _budget_cell(scores: Scores, method: str, recipe: str, budget: int, key: str, domain: str) -> str:
    steps = [n for n in FEW if scores.has(domain, method, recipe, budget, n)]
    places = BUDGET_DECIMALS[key]
    return " / ".join(f"{scores.mean(key, domain, method, recipe, budget, n).mean:.{places}f}" for n in steps)


def checkerboard_budget_section(scores: Scores, plan: StudyPlan, figure: Path | None) -> list[str]:
    """The checkerboard's sliced Wasserstein distance at 1, 2 and 4 steps per checkerboard budget (none with one
    budget)."""
    if "checkerboard" not in plan.domains or len(plan.domain_budgets("checkerboard")) < 2:
        return []
    lines = [
        "Sliced Wasserstein distance (SWD) to fresh draws of the density, at the checkerboard's own budgets; "
        f"'plateau': SWD at 1 step improved by less than {PLATEAU:.0%} over the budget before the largest; 'worse': "
        f"it rose by {PLATEAU:.0%} or more (the checkerboard's budget is fixed: only digits decides whether the "
        "study's budget doubles).",
        "",
        *budget_table(scores, plan, "swd", "checkerboard"),
        "",
    ]
    return lines + ([f"![SWD against budget]({figure.name})", ""] if figure is not None else [])


def settling_lines(scores: Scores, plan: StudyPlan) -> list[str]:
    """Whether the answer stopped moving over the last doubling (and at which budget the study stopped), or
    that it still moves at the largest budget allowed, with the leaders' trend."""
    moves = [movement(scores, plan, n) for n in FEW]
    if any(m is None for m in moves):
        return []
    big, bigger = plan.all_budgets()[-2:]
    if settled(scores, plan):
        head = f"**The answer stopped moving at {bigger:,} steps**: from {big:,} to {bigger:,} steps"
        return [f"{head} no leader swaps places beyond seed noise and every leader improved by less than 10%.", ""]
    cap = f" (the largest the study allows: --max-steps {plan.max_steps:,})" if plan.max_steps else ""
    lines = [f"**The answer still moves at {bigger:,} steps{cap}.** From {big:,} to {bigger:,} steps:", ""]
    for move in moves:
        why = [f"{method_title(a)} ahead of {method_title(b)}, then behind" for a, b in move.swaps]
        why += [f"{method_title(m)} still improving ({gain:.0%} lower FD)" for m, gain in move.improving.items()]
        lines.append(f"- {steps_label(move.steps)}: " + ("; ".join(why) if why else "settled") + ".")
    return [*lines, ""]


def ranking_change_lines(scores: Scores, plan: StudyPlan) -> list[str]:
    """The leaders at the two largest budgets at 1, 2 and 4 steps, and the pairs that swap places."""
    (big, bigger), recipe = plan.all_budgets()[-2:], plan.main_recipe
    lines = [
        f"The ranking at {big} and at {bigger} steps (the two largest budgets); a change counts when two methods "
        "swap places beyond seed noise (each significantly ahead at one budget, Welch's t-test over seeds, "
        "p < 0.05 after Holm's correction over the pairs of methods at that budget and step count):",
        "",
    ]
    for n in FEW:
        a = leaders(scores, "fd_digits", "digits", plan.methods, recipe, big, n)
        c = leaders(scores, "fd_digits", "digits", plan.methods, recipe, bigger, n)
        swapped = reversals(scores, "fd_digits", "digits", plan.methods, recipe, (big, bigger), n)
        pairs = ", ".join(
            f"{method_title(x)} ahead of {method_title(y)} at {big}, behind at {bigger}" for x, y in swapped
        )
        changes = f"; swapped: {pairs}" if swapped else "; no two methods swap places"
        lines.append(
            f"- {steps_label(n)}: best at {big} steps {', '.join(method_title(m) for m in a)}; at {bigger} steps "
            f"{', '.join(method_title(m) for m in c)} (methods listed together are within seed noise){changes}."
        )
    return lines
