"""The study's plan: which runs it trains (domain, method, recipe, seed), at which budgets, and its sizes.

A *run* is one training run; it is evaluated at each of its budgets (training steps) before it trains on,
so one run gives the scores of its shorter budgets too. That equals separate shorter runs for every
method whose schedule does not depend on the run's length (constant learning rate after the warm-up;
the schedules counted in steps, ESC's and sCT's, end at a fixed step); consistency training's curriculum
and progressive distillation's stages are spread over the run's length, so those two train one run per
budget. The distillation methods start from the flow-matching run of the same domain, recipe and seed
at the largest budget.

The methods are the registered objectives (``shortcut_models.objectives.OBJECTIVES``, in its order), and
what the study needs to know of one is declared on its class: ``teacher_run`` (it starts from a
flow-matching run), ``schedule_knob`` (a schedule counted in steps, scaled to the budget),
``schedule_spans_run`` (one run per budget), ``ablations`` (its recipe's components switched off) and
``starts_from`` (it is meant to fine-tune a flow-matching run: one of the fine-tuning question's targets).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..objectives import OBJECTIVES
from ..objectives.recipe import LOGIT_NORMAL_TIMES

TEACHER = "flow"  # the run the distillation methods (their teacher_objective) and the fine-tuning runs start from
DOMAINS = ("digits", "checkerboard")
PRESETS = {"digits": "digits-uncond", "checkerboard": "checkerboard"}

# Recipes: the overrides that set a run's time sampler, loss weight and target network. "own" is each
# method's default (its paper's recipe: the objective's defaults, which the digits-uncond preset leaves as they
# are; experiments/recipe_table.py lists them with their sources); "common" is the one recipe every method also
# runs with, chosen once: logit-normal times (MeanFlow's (0.4, 1.0)), the plain squared error (the adaptive
# weight made shortcut training diverge at this learning rate: benchmarks/RESULTS.md, "Method vs recipe") and
# the online network as target; "meanflow" is MeanFlow's own recipe, run for flow matching and shortcut;
# "tuned" is the demo's (`shortcut demo`): each method's own but the online network as target, the choice of
# the runs of docs/demo/tuning.md for a budget of thousands of steps.
RECIPES: dict[str, tuple[str, ...]] = {
    "own": (),
    "common": (*LOGIT_NORMAL_TIMES, "loss_weight=mse", "target_network=online"),
    "meanflow": (*LOGIT_NORMAL_TIMES, "loss_weight=adaptive", "adaptive_eps=0.01", "target_network=online"),
    "tuned": ("target_network=online",),
}
RECIPE_TEXT = {
    "own": "each method's own (its paper's) time sampler, loss weight and target network",
    "common": "logit-normal times (mean 0.4, spread 1.0 of the logit), plain squared error, online network as target",
    "meanflow": "MeanFlow's recipe: logit-normal times (0.4, 1.0), adaptive loss weight (eps 0.01), online target",
    "tuned": "the demo's tuned choice: the online network as target (docs/demo/tuning.md)",
}
MEANFLOW_RECIPE_METHODS = ("flow", "shortcut")
# The fine-tuning question (--full) fine-tunes flow matching into these, into the best one-step method without a
# teacher, and into every method meant to start from a flow-matching run (its ``starts_from``: Decoupled MeanFlow)
FINETUNE_METHODS = ("shortcut", "imf")

# Schedules counted in training steps (a method's ``schedule_knob``), set by their authors for runs of hundreds of
# thousands of steps (ESC's terminal-time schedule, 20,000; sCT's tangent warm-up, 10,000): the study ends them at
# this share of the largest budget of their domain, so they run their course within every budget but the smallest.
SCHEDULE_SHARE = 0.1


# `make study`'s methods: the leaders at 1, 2 or 4 steps of the last full study (docs/study/full/report.md, 1,000
# steps: iMF, MeanFlow, IMM, consistency distillation), the methods added since that were within seed noise of them
# (SoFlow, alpha-Flow: 800 steps, 3 seeds), and flow matching and shortcut, which the seed's two questions name
DEFAULT_METHODS = ("flow", "shortcut", "consistency-distillation", "meanflow", "imf", "imm", "soflow", "alpha-flow")


def registered_methods() -> tuple[str, ...]:
    """Every registered objective, in the registry's order: the study's methods by default."""
    return tuple(OBJECTIVES)


def method_title(method: str) -> str:
    """How reports name a method (its objective's ``title``)."""
    return OBJECTIVES[method].title


def ablations(method: str) -> dict[str, tuple[str, ...]]:
    """The ablation of ``method``: each component of its recipe switched off one at a time (name -> overrides)."""
    return OBJECTIVES[method].ablations


@dataclass(frozen=True)
class Run:
    """One training run: ``recipe`` names a RECIPES entry or an ablation (``ablation:COMPONENT``);
    ``init`` > 0 starts from the flow-matching run of the same seed (fine-tuning, that share of the
    largest budget)."""

    domain: str
    method: str
    recipe: str
    seed: int
    budgets: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    init: float = 0.0
    per_budget: bool = False  # one of a method's runs of one budget each (its schedule spans the run)

    @property
    def name(self) -> str:
        recipe = self.recipe.replace("ablation:", "ablation-").replace(" ", "-").replace("%", "pct")
        recipe = "".join(c for c in recipe if c.isalnum() or c in "-.")
        tail = f"-from-flow-{round(self.init * 100)}pct" if self.init else ""
        single = f"-{self.budgets[0]}steps" if self.per_budget else ""
        return f"{self.domain}/{self.method}-{recipe}{tail}-seed{self.seed}{single}"

    @property
    def steps(self) -> int:
        return self.budgets[-1]


@dataclass
class StudyPlan:
    """Sizes of the study. The defaults are `make study`'s; :func:`full_plan` gives `shortcut study --full`'s
    (docs/study/report.md states the time each took on 2 CPU cores)."""

    steps: int = 1600  # the largest budget: where recipes and seeds are compared (`make study`: what fits an hour)
    budgets: tuple[int, ...] = ()  # smaller budgets scored on the way (the budget figure); () = none
    seeds: tuple[int, ...] = (0, 1, 2)
    max_steps: int = 0  # double ``steps`` while the answer moves, up to this budget (0: no doubling)
    grown: tuple[int, ...] = ()  # the largest budgets of the stages before this one (each half the next)
    leader_seeds: tuple[int, ...] = ()  # more seeds, at the end, for the leaders, flow matching and shortcut
    settling: bool = False  # the largest budget may still double: score it at ``budget_eval_steps`` for now
    device: str = "cpu"  # where every run trains and is scored (cpu, cuda, cuda:N); `jobs` runs share it
    methods: tuple[str, ...] = DEFAULT_METHODS  # full_plan: every registered method
    domains: tuple[str, ...] = DOMAINS
    recipes: tuple[str, ...] = ("own", "common")  # on digits; the first is the main one (main_recipe)
    common_methods: tuple[str, ...] = ("flow", "shortcut", "meanflow")  # under the common recipe; () = all
    meanflow_recipe: bool = False  # flow matching and shortcut also with MeanFlow's recipe
    ablation: bool = False  # the best one-step method without a teacher, components off one at a time
    finetune: tuple[float, ...] = ()  # flow matching fine-tuned at these shares of the largest budget
    eval_num: int = 1000
    eval_steps: tuple[int, ...] = (1, 2, 4, 8, 128)
    budget_eval_steps: tuple[int, ...] = (1, 2, 4)  # step counts scored at the smaller budgets
    grid_steps: tuple[int, ...] = (1, 2, 4)
    pr_k: int = 3
    timing_repeats: int = 20
    sample_seed: int = 0  # the sampling noise, the same for every method and run
    toy_steps: int = 1000  # checkerboard runs (own recipes only): the least at which flow matching learns the board
    toy_budgets: tuple[int, ...] = ()  # smaller checkerboard budgets scored on the way; () = none
    toy_num: int = 2000
    overrides: list[str] = field(default_factory=list)  # config overrides for every digits run
    tracking: tuple[
        str, ...
    ] = ()  # config keys of an evaluation during training (eval_every=...) of digits runs from scratch

    @property
    def main_recipe(self) -> str:
        """The recipe of the main runs, the first of ``recipes``: "own" in the study, "tuned" in the demo. Its digits
        runs are scored at every budget, drawn, timed, fine-tuned and taught from, and read by the report sections
        the demo shares with the study (report.py, goals.py); the checkerboard runs under it. The study's own
        sections (study_report.py, equal_cost.py) rank the "own" recipe, the study's first."""
        return self.recipes[0]

    def all_budgets(self) -> tuple[int, ...]:
        return tuple(sorted({*self.budgets, self.steps}))

    def domain_budgets(self, domain: str) -> tuple[int, ...]:
        """Every budget a domain's runs under the main recipe are scored at, smallest first."""
        if domain == "digits":
            return self.all_budgets()
        return tuple(sorted({*self.toy_budgets, self.toy_steps}))

    def domain_steps(self, domain: str) -> int:
        """The largest budget of a domain's runs: ``steps`` on digits, ``toy_steps`` on the checkerboard."""
        return self.steps if domain == "digits" else self.toy_steps

    def first_steps(self, domain: str = "digits") -> int:
        """The largest budget of the first stage: where the schedules counted in steps are set, and up to which
        a distillation run is one run from its teacher at that budget."""
        return self.grown[0] if self.grown and domain == "digits" else self.domain_steps(domain)

    def can_double(self) -> bool:
        """Whether the digits budget may still double: twice ``steps`` is within ``max_steps``."""
        return "digits" in self.domains and 2 * self.steps <= self.max_steps

    def teacher_steps(self, budget: int) -> int:
        """The budget of the teacher a distillation run of ``budget`` steps starts from: the first stage's largest
        budget, or ``budget`` itself past it (a run of its own from the teacher at that budget)."""
        return max(budget, self.first_steps())


def grown(plan: StudyPlan) -> StudyPlan:
    """The next stage of ``plan``: the largest budget doubled, the current one scored on the way."""
    return replace(plan, steps=2 * plan.steps, grown=(*plan.grown, plan.steps), budgets=(*plan.budgets, plan.steps))


def stages(plan: StudyPlan) -> list[StudyPlan]:
    """The plans of ``plan``'s stages, first to last (one, unless it grew)."""
    first = replace(
        plan, steps=plan.first_steps(), grown=(), budgets=tuple(b for b in plan.budgets if b < plan.first_steps())
    )
    out = [first]
    while out[-1].steps < plan.steps:
        out.append(grown(out[-1]))
    return out


# --full scores its runs on the way at these shares of its first largest budget (and the checkerboard's at these
# shares of its budget): three budgets spanning 4x, each doubling adding one on digits
FULL_BUDGET_SHARES = (1 / 4, 1 / 2)


def shares_of(steps: int) -> tuple[int, ...]:
    """The budgets at FULL_BUDGET_SHARES of ``steps``, below it."""
    return tuple(sorted({max(1, round(steps * s)) for s in FULL_BUDGET_SHARES} - {steps}))


def full_plan(**changes) -> StudyPlan:
    """`shortcut study --full`: every method, three budgets spanning 4x, doubled while the answer moves (up to
    ``max_steps``), two more seeds for the leaders, flow matching and shortcut, the common recipe for flow
    matching and shortcut, MeanFlow's recipe, the ablation and the fine-tuning question (at 25% and 50% of the
    budget). The smaller budgets follow ``steps`` (the checkerboard's, ``toy_steps``); the largest ends at
    `make study`'s budget."""
    base = {
        "methods": registered_methods(),
        "steps": 800,
        "max_steps": 1600,
        "leader_seeds": (3, 4),
        "meanflow_recipe": True,
        "ablation": True,
        "finetune": (0.25, 0.5),
        "common_methods": ("flow", "shortcut"),  # the first question: shortcut against flow matching, one recipe
    }
    plan = StudyPlan(**{**base, **changes})
    if "budgets" not in changes:
        plan.budgets = shares_of(plan.steps)
    if "toy_budgets" not in changes:
        plan.toy_budgets = shares_of(plan.toy_steps)
    return plan


def method_overrides(plan: StudyPlan, method: str, recipe: str, domain: str = "digits") -> tuple[str, ...]:
    """A method's overrides under a recipe: the recipe's keys, then its schedule knob at SCHEDULE_SHARE of
    the domain's largest budget."""
    if recipe.startswith("ablation:"):
        recipe_keys = ablations(method)[recipe.removeprefix("ablation:")]
    else:
        recipe_keys = RECIPES[recipe]
    knob = OBJECTIVES[method].schedule_knob
    schedule = (f"{knob}={round(plan.first_steps(domain) * SCHEDULE_SHARE)}",) if knob else ()
    return (*recipe_keys, *schedule)


def _runs_of(plan: StudyPlan, domain: str, method: str, recipe: str, seed: int, budgets: tuple[int, ...]) -> list[Run]:
    """The runs giving ``budgets``: one run scored on the way; one per budget where the method's schedule spans
    the run, and past the first stage for a distillation method (a run from its teacher at that budget)."""
    overrides = method_overrides(plan, method, recipe, domain)
    if OBJECTIVES[method].schedule_spans_run and len(budgets) > 1:
        return [Run(domain, method, recipe, seed, (b,), overrides, per_budget=True) for b in budgets]
    first = plan.first_steps(domain)
    if OBJECTIVES[method].teacher_run and budgets[-1] > first:
        along = tuple(b for b in budgets if b <= first)
        runs = [Run(domain, method, recipe, seed, along, overrides)] if along else []
        return runs + [
            Run(domain, method, recipe, seed, (b,), overrides, per_budget=True) for b in budgets if b > first
        ]
    return [Run(domain, method, recipe, seed, budgets, overrides)]


def own_runs(plan: StudyPlan, methods, seeds) -> list[Run]:
    """The digits runs of ``methods`` under the main recipe (their own, in the study) with ``seeds``, scored at
    every budget."""
    main, budgets = plan.main_recipe, plan.all_budgets()
    return [r for m in methods for s in seeds for r in _runs_of(plan, "digits", m, main, s, budgets)]


def seed_stages(plan: StudyPlan, methods) -> list[tuple[StudyPlan, list[Run]]]:
    """The runs of ``methods`` with ``plan.leader_seeds`` through the plan's stages, as the first seeds went: each
    stage's plan (its largest budget scored at few step counts until the last stage) with its runs."""
    return [
        (replace(stage, settling=stage.steps != plan.steps), own_runs(stage, methods, plan.leader_seeds))
        for stage in stages(plan)
    ]


def main_runs(plan: StudyPlan) -> list[Run]:
    """Every method under every seed on every domain, under every recipe on digits (the main recipe on the
    checkerboard); the runs under the main recipe (each method's own in the study) are scored at every budget of
    their domain."""
    runs = []
    main = plan.main_recipe
    for domain in plan.domains:
        steps = plan.domain_steps(domain)
        for recipe in plan.recipes if domain == "digits" else (main,):
            for method in plan.methods:
                if recipe == "common" and plan.common_methods and method not in plan.common_methods:
                    continue
                for seed in plan.seeds:
                    budgets = plan.domain_budgets(domain) if recipe == main else (steps,)
                    runs += _runs_of(plan, domain, method, recipe, seed, budgets)
        if plan.meanflow_recipe and domain == "digits":
            for method in MEANFLOW_RECIPE_METHODS:
                runs += [
                    Run(domain, method, "meanflow", s, (steps,), method_overrides(plan, method, "meanflow"))
                    for s in plan.seeds
                ]
    return runs


def best_without_teacher(fd_at_1: dict[str, float]) -> str:
    """The method (with an ablation table) whose mean FD at 1 step is lowest among those without a teacher."""
    candidates = [m for m in fd_at_1 if not OBJECTIVES[m].teacher_run and ablations(m)]
    return min(candidates, key=lambda m: fd_at_1[m])


def finetune_targets(plan: StudyPlan, winner: str | None) -> tuple[str, ...]:
    """The methods flow matching is fine-tuned into: shortcut, ``winner``, then those of the plan's methods that
    are iMF or declare that they start from a flow-matching run (``starts_from``), in the registry's order."""
    others = [m for m in plan.methods if m in FINETUNE_METHODS or OBJECTIVES[m].starts_from == TEACHER]
    return tuple(m for m in dict.fromkeys(("shortcut", winner, *others)) if m)


def second_stage_runs(plan: StudyPlan, winner: str) -> list[Run]:
    """The ablation of ``winner`` and the fine-tuning runs (flow matching into each of
    :func:`finetune_targets`), on digits, every seed."""
    runs = []
    if plan.ablation:
        for component in ablations(winner):
            recipe = f"ablation:{component}"
            runs += [
                Run("digits", winner, recipe, s, (plan.steps,), method_overrides(plan, winner, recipe))
                for s in plan.seeds
            ]
    main = plan.main_recipe
    for method in finetune_targets(plan, winner):
        for share in plan.finetune:
            steps = max(1, round(plan.steps * share))
            runs += [
                Run("digits", method, main, s, (steps,), method_overrides(plan, method, main), init=share)
                for s in plan.seeds
            ]
    return runs


def teacher_of(run: Run, plan: StudyPlan) -> Run | None:
    """The flow-matching run a distillation or fine-tuning run starts from (same domain, recipe, seed; the main
    recipe's for a fine-tuning run or an ablation)."""
    if not (OBJECTIVES[run.method].teacher_run or run.init):
        return None
    main = plan.main_recipe
    recipe = main if run.init or run.recipe.startswith("ablation:") else run.recipe
    budgets = plan.domain_budgets(run.domain) if recipe == main else (plan.domain_steps(run.domain),)
    return Run(run.domain, TEACHER, recipe, run.seed, budgets, method_overrides(plan, TEACHER, recipe, run.domain))


def main_run(plan: StudyPlan, method: str) -> Run:
    """The digits run of ``method`` under the main recipe with the first seed that reaches the largest budget."""
    main = plan.main_recipe
    return next(
        r
        for r in main_runs(plan)
        if r.domain == "digits" and r.method == method and r.recipe == main and r.steps == plan.steps
    )
