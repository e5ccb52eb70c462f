"""When the study's answer has stopped moving, so that its budget stops growing.

Over the last doubling of the budget (the two largest budgets scored), at 1, 2 and 4 sampling steps, the answer
has *settled* when no leader (the best method by mean FD and those within seed noise of it, at either budget)
swaps places with another method beyond seed noise, and every leader's FD improved by less than
``PLATEAU`` (10%). A method whose FD improved by less than that over the last doubling has reached a *plateau*
there. ``shortcut study --full`` doubles its largest budget until the answer settles or ``max_steps`` is reached.
"""

from __future__ import annotations

from dataclasses import dataclass

from .goals import FEW
from .study_plan import StudyPlan
from .study_scores import Scores, leaders, reversals

PLATEAU = 0.10  # a relative improvement of FD below this over one doubling of the budget: a plateau
KEY, DOMAIN = "fd_digits", "digits"  # what the growth reads: FD on digits (the checkerboard is scored beside it)


def improvement(
    scores: Scores, method: str, budgets: tuple[int, int], steps: int, recipe: str, key: str = KEY, domain: str = DOMAIN
) -> float | None:
    """The relative improvement of ``method``'s mean score ``key`` (FD on digits by default; lower is better) at
    ``steps`` sampling steps from ``budgets[0]`` to ``budgets[1]`` (0.25: a quarter lower; negative: worse); None
    where a budget was not scored."""
    if not all(scores.has(domain, method, recipe, b, steps) for b in budgets):
        return None
    before, after = (scores.mean(key, domain, method, recipe, b, steps).mean for b in budgets)
    return 1.0 - after / before


def plateaued(
    scores: Scores, method: str, budgets: tuple[int, int], steps: int, recipe: str, key: str = KEY, domain: str = DOMAIN
) -> bool:
    """Whether ``method``'s score ``key`` at ``steps`` improved by less than PLATEAU over ``budgets``."""
    gain = improvement(scores, method, budgets, steps, recipe, key, domain)
    return gain is not None and gain < PLATEAU


@dataclass(frozen=True)
class Movement:
    """How the answer at ``steps`` sampling steps moved from ``budgets[0]`` to ``budgets[1]``: the leaders
    at each, the pairs with a leader that swap places beyond seed noise (ahead at the first budget,
    behind at the second) and the leaders still improving (method -> relative improvement of FD)."""

    steps: int
    budgets: tuple[int, int]
    leaders_before: tuple[str, ...]
    leaders_after: tuple[str, ...]
    swaps: tuple[tuple[str, str], ...]
    improving: dict[str, float]

    @property
    def settled(self) -> bool:
        return not self.swaps and not self.improving


def movement(scores: Scores, plan: StudyPlan, steps: int) -> Movement | None:
    """The answer's movement at ``steps`` over the plan's two largest budgets (None with one budget only)."""
    if len(plan.all_budgets()) < 2:
        return None
    budgets, recipe = plan.all_budgets()[-2:], plan.main_recipe
    before, after = (tuple(leaders(scores, KEY, DOMAIN, plan.methods, recipe, b, steps)) for b in budgets)
    tops = set(before) | set(after)
    swaps = tuple(
        (a, b)
        for a, b in reversals(scores, KEY, DOMAIN, plan.methods, recipe, budgets, steps)
        if a in tops or b in tops
    )
    gains = {m: improvement(scores, m, budgets, steps, recipe) for m in after}
    improving = {m: g for m, g in gains.items() if g is not None and g >= PLATEAU}
    return Movement(steps, budgets, before, after, swaps, improving)


def settled(scores: Scores, plan: StudyPlan) -> bool:
    """Whether the answer at 1, 2 and 4 steps has stopped moving over the plan's last doubling."""
    moves = [movement(scores, plan, n) for n in FEW]
    return all(m is not None and m.settled for m in moves)


def keeps_growing(scores: Scores, plan: StudyPlan) -> bool:
    """Whether the study doubles its budget once more: the answer still moves and the doubled budget is
    within ``plan.max_steps``."""
    return plan.can_double() and not settled(scores, plan)


def seed_methods(scores: Scores, plan: StudyPlan) -> tuple[str, ...]:
    """The methods that get ``plan.leader_seeds``: the leaders at 1, 2 and 4 steps at the largest budget,
    flow matching and shortcut (the seed's two questions), in the plan's order."""
    tops = {m for n in FEW for m in leaders(scores, KEY, DOMAIN, plan.methods, plan.main_recipe, plan.steps, n)}
    return tuple(m for m in plan.methods if m in tops or m in ("flow", "shortcut"))
