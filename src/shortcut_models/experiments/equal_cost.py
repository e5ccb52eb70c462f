"""The study's ranking at equal training cost: every method given what flow matching costs at the largest budget.

A method's training cost is counted in flow-matching steps: its steps times its measured step time against
flow matching's (``ratio`` of the cost table, :func:`~.study.measure_costs`), plus, for a distillation
method, its teacher: the flow-matching run of the largest budget it starts from. At flow matching's cost
at the largest budget B, a method can train B' = (B r_flow - teacher) / r steps (r: its cost per step;
r_flow = 1). Its FD there is read off its budget curve: per seed, linear in log-budget between the two
scored budgets around B'. Where B' lies outside the scored budgets (or is not positive: the teacher alone
costs that much) nothing is extrapolated; the report says so.
"""

from __future__ import annotations

import math

from ..metrics.seed_intervals import seed_mean
from ..objectives import OBJECTIVES
from .goals import FEW
from .report import steps_label
from .study_plan import TEACHER, StudyPlan, method_title
from .study_scores import Column, Scores, rank

Costs = dict[str, dict[str, float]]


def equal_cost_budget(costs: Costs, plan: StudyPlan, method: str) -> float:
    """The training steps of ``method`` that cost what flow matching's largest budget does (its teacher
    run included: the first stage's, or past it one of the run's own budget); 0 or less when the teacher run
    alone costs that much."""
    total, own, flow = plan.steps * costs[TEACHER]["ratio"], costs[method]["ratio"], costs[TEACHER]["ratio"]
    if not OBJECTIVES[method].teacher_run:
        return total / own
    first = plan.first_steps()
    within = (total - first * flow) / own  # a run of the first stage, from its teacher at that stage's budget
    return within if within <= first else total / (own + flow)  # past it: the teacher has the run's budget


def log_interpolate(budgets: list[int], values: list[float], at: float) -> float | None:
    """``values`` (one per budget, budgets ascending) at budget ``at``, linear in log-budget between the two
    budgets around it; None outside [budgets[0], budgets[-1]]."""
    if not budgets or at <= 0 or not budgets[0] <= at <= budgets[-1]:
        return None
    for lo, hi, v_lo, v_hi in zip(budgets, budgets[1:], values, values[1:]):
        if lo <= at <= hi:
            w = math.log(at / lo) / math.log(hi / lo)
            return v_lo + w * (v_hi - v_lo)
    return values[0]  # a single budget, equal to ``at``


def at_budget(scores: Scores, plan: StudyPlan, method: str, steps: int, at: float) -> list[float] | None:
    """FD of ``method`` (own recipe) at ``steps`` sampling steps and training budget ``at``, one value per
    seed, read off its scored budgets; None where ``at`` lies outside them or a seed lacks a budget."""
    budgets = [b for b in plan.all_budgets() if scores.has("digits", method, "own", b, steps)]
    by_seed: dict[int, list[float]] = {}
    for b in budgets:
        for row in scores.select("digits", method, "own", b, steps):
            by_seed.setdefault(int(row["seed"]), []).append(float(row["fd_digits"]))
    if not by_seed or any(len(v) != len(budgets) for v in by_seed.values()):
        return None
    values = [log_interpolate(budgets, by_seed[s], at) for s in sorted(by_seed)]
    return None if values[0] is None else values


def equal_cost_column(scores: Scores, plan: StudyPlan, costs: Costs, steps: int) -> Column:
    """Every method's FD at its equal-cost budget at ``steps`` sampling steps, where it can be read."""
    column = {}
    for m in plan.methods:
        values = at_budget(scores, plan, m, steps, equal_cost_budget(costs, plan, m))
        if values is not None:
            column[m] = values
    return column


def equal_cost_section(scores: Scores, plan: StudyPlan, costs: Costs) -> list[str]:
    """The equal-cost table (each method's cost per step, its equal-cost budget and, with several scored
    budgets, its FD there at 1, 2 and 4 steps) and the rankings at equal cost."""
    budgets = plan.all_budgets()
    steps = FEW if len(budgets) > 1 else ()  # one budget: nothing but flow matching's own can be read
    columns = {n: equal_cost_column(scores, plan, costs, n) for n in FEW}
    lines = [
        "The ranking above compares equal training steps. Here every method gets what flow matching costs at "
        f"the largest budget ({plan.steps:,} steps): a method's cost is its steps times its measured step time "
        "against flow matching's (the cost table), plus, for a distillation method, its teacher's flow-matching "
        f"run ({plan.first_steps():,} steps, or the run's own budget above that). Its FD at the budget of that cost is read off its budget curve (per seed, "
        "linear in log-budget between the two scored budgets around it); where that budget lies outside the "
        f"scored budgets ({', '.join(f'{b:,}' for b in budgets)} steps) it is not extrapolated.",
        "",
        "| method | cost per step (measured / model) | budget at equal cost |"
        + "".join(f" {steps_label(n)} |" for n in steps),
        "|---|---|---|" + "---|" * len(steps),
    ]
    for m in plan.methods:
        lines.append(_row(plan, costs, columns, m, steps))
    lines.append("")
    return lines + _ranking_lines(plan, columns)


def _row(plan: StudyPlan, costs: Costs, columns: dict[int, Column], m: str, steps: tuple[int, ...]) -> str:
    """One method's row of :func:`equal_cost_section`: FD cells at ``steps`` sampling steps."""
    b = equal_cost_budget(costs, plan, m)
    shown = f"{b:,.0f}" if b >= 100 else f"{b:.1f}"  # a tiny budget (a smoke test) keeps its fraction
    budget = f"{shown} steps" if b > 0 else "none (the teacher run alone costs as much)"
    budgets = plan.all_budgets()
    outside = "below the smallest scored budget" if b < budgets[0] else "above the largest scored budget"
    cells = [(seed_mean(columns[n][m]).text() if m in columns[n] else outside) if b > 0 else "" for n in steps]
    cost = f"{costs[m]['ratio']:.2f} / {costs[m]['model']:.2f}"
    return f"| {method_title(m)} | {cost} | {budget} |" + "".join(f" {c} |" for c in cells)


def _ranking_lines(plan: StudyPlan, columns: dict[int, Column]) -> list[str]:
    """The rankings at equal cost ('>' significant, '≈' a tie; Holm over the pairs ranked), or why none."""
    if all(len(c) < 2 for c in columns.values()):
        more = (
            " This study scored one budget; `shortcut study --full` scores several, so the FD at most methods' "
            "equal-cost budgets can be read there."
            if len(plan.all_budgets()) == 1
            else ""
        )
        return [f"Fewer than two methods can be read at equal cost, so there is no ranking.{more}"]
    lines = [
        "At equal cost ('>': a significant gap to the next, '≈': a tie; Welch's t-test over seeds, p < 0.05 "
        "after Holm's correction over the pairs ranked):",
        "",
    ]
    for n, column in columns.items():
        ranked = rank(column)
        parts = [f"{method_title(m)} ({mean.text()}) {'>' if ahead else '≈'}" for m, mean, ahead in ranked]
        lines.append(f"- {steps_label(n)}: " + " ".join(parts)[:-2])
    return lines
