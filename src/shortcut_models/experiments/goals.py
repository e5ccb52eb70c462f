"""The goals the demo's and the study's reports check, each with whether it is met and the numbers behind it.

A goal is stated where its scores exist (the recipe effect needs the common recipe, the ranking two budgets,
the shortcut goals a shortcut run, the cost goal the side-by-side timing); means are over seeds.
"""

from __future__ import annotations

from collections.abc import Callable

from ..objectives import OBJECTIVES
from .study_plan import StudyPlan, method_title
from .study_scores import Scores, reversals

FEW = (1, 2, 4)  # the step counts the study ranks
COST_TOLERANCE = 1.15  # a step may cost up to 15% more than its cost model predicts

Goal = tuple[str, bool, str]
Costs = dict[str, dict[str, float]]


def _mean(scores: Scores, plan: StudyPlan, method: str, steps: int, recipe: str | None = None):
    """Mean FD of ``method`` at ``steps`` sampling steps under ``recipe`` (None: the plan's main recipe)."""
    return scores.mean("fd_digits", "digits", method, recipe or plan.main_recipe, plan.steps, steps)


def _has(scores: Scores, plan: StudyPlan, methods: tuple[str, ...], steps: int, recipe: str | None = None) -> bool:
    return all(scores.has("digits", m, recipe or plan.main_recipe, plan.steps, steps) for m in methods)


def recipe_effect(scores: Scores, plan: StudyPlan, costs: Costs) -> Goal | None:
    """The common recipe's effect on flow matching at 128 steps (measured: met)."""
    if not _has(scores, plan, ("flow",), 128, "common"):
        return None
    common, main = _mean(scores, plan, "flow", 128, "common"), _mean(scores, plan, "flow", 128)
    return (
        "the recipe effect measured for flow matching at 128 steps",
        True,
        f"common recipe {common.text()} vs {plan.main_recipe} {main.text()}",
    )


def one_step_within_2x(scores: Scores, plan: StudyPlan, costs: Costs) -> Goal | None:
    """The best one-step method without a teacher within 2x of flow matching at 128 steps, same recipe."""
    recipe = "common" if _has(scores, plan, ("flow",), 128, "common") else plan.main_recipe
    candidates = [m for m in plan.methods if not OBJECTIVES[m].teacher_run and _has(scores, plan, (m,), 1, recipe)]
    if not candidates or not _has(scores, plan, ("flow",), 128, recipe):
        return None
    best = min(candidates, key=lambda m: _mean(scores, plan, m, 1, recipe).mean)
    ref, one = _mean(scores, plan, "flow", 128, recipe), _mean(scores, plan, best, 1, recipe)
    return (
        "the best one-step model without a teacher within 2x of flow matching at 128 steps, both under the "
        f"{recipe} recipe",
        one.mean <= 2 * ref.mean,
        f"{method_title(best)} {one.text()} vs 2 x {ref.mean:.2f} = {2 * ref.mean:.2f}",
    )


def shortcut_few_steps(scores: Scores, plan: StudyPlan, costs: Costs) -> Goal | None:
    """Shortcut better than flow matching at 1, 2 and 4 steps (the main recipe: each one's own in the study)."""
    few = [n for n in FEW if _has(scores, plan, ("shortcut", "flow"), n)]
    if not few:
        return None
    s = {n: _mean(scores, plan, "shortcut", n) for n in few}
    f = {n: _mean(scores, plan, "flow", n) for n in few}
    return (
        "shortcut better than flow matching at 1, 2 and 4 steps",
        all(s[n].mean < f[n].mean for n in few),
        ", ".join(f"{n}: {s[n].text()} vs {f[n].text()}" for n in few),
    )


def shortcut_many_steps(scores: Scores, plan: StudyPlan, costs: Costs) -> Goal | None:
    """Shortcut at 128 steps within 1.25x of flow matching at 128 steps (the main recipe)."""
    if not _has(scores, plan, ("shortcut", "flow"), 128):
        return None
    s, f = _mean(scores, plan, "shortcut", 128), _mean(scores, plan, "flow", 128)
    return (
        "shortcut at 128 steps within 1.25x of flow matching at 128 steps",
        s.mean <= 1.25 * f.mean,
        f"{s.text()} vs 1.25 x {f.mean:.2f} = {1.25 * f.mean:.2f}",
    )


def ranking_holds(scores: Scores, plan: StudyPlan) -> tuple[bool, str]:
    """Whether no two methods swap places beyond seed noise between the two largest budgets at 1, 2 and 4
    steps, with the swaps counted per step count."""
    big, bigger = plan.all_budgets()[-2:]
    recipe = plan.main_recipe
    counts = {n: len(reversals(scores, "fd_digits", "digits", plan.methods, recipe, (big, bigger), n)) for n in FEW}
    text = f"{big} vs {bigger} steps: " + ", ".join(
        f"{n} step{'s' if n > 1 else ''} {c} swap{'s' if c != 1 else ''}" for n, c in counts.items()
    )
    return not any(counts.values()), text


def ranking_goal(scores: Scores, plan: StudyPlan, costs: Costs) -> Goal | None:
    """The ranking at 1, 2 and 4 steps holds between the two largest budgets."""
    if len(plan.all_budgets()) < 2:
        return None
    holds, text = ranking_holds(scores, plan)
    return "the ranking at 1, 2 and 4 steps is the same at the two largest budgets", holds, text


def cost_goal(scores: Scores, plan: StudyPlan, costs: Costs) -> Goal | None:
    """Every objective's measured step cost within COST_TOLERANCE of its cost model."""
    if not costs:
        return None
    over = {m: c["ratio"] / c["model"] for m, c in costs.items()}
    return (
        f"every objective's step costs at most {COST_TOLERANCE:.2f}x its cost model",
        all(v <= COST_TOLERANCE for v in over.values()),
        ", ".join(f"{method_title(m)} {v:.2f}x" for m, v in over.items()),
    )


GOALS: tuple[Callable[[Scores, StudyPlan, Costs], Goal | None], ...] = (
    recipe_effect,
    one_step_within_2x,
    shortcut_few_steps,
    shortcut_many_steps,
    ranking_goal,
    cost_goal,
)


def goals(scores: Scores, plan: StudyPlan, costs: Costs) -> list[Goal]:
    """Every goal whose scores exist: (text, met, the numbers behind it)."""
    return [goal for check in GOALS if (goal := check(scores, plan, costs)) is not None]
