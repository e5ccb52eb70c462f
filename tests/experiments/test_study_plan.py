"""The study's plan: every (domain, method, recipe, seed) once, budgets scored on the way where that equals
a shorter run, teachers, the ablation and the fine-tuning runs; the methods and what the study knows of each
come from the registry, and the full plan's runs are those of the plan before they did (cb7ae8d)."""

from collections import Counter
from pathlib import Path

from shortcut_models.experiments.study_plan import (
    DEFAULT_METHODS,
    RECIPES,
    StudyPlan,
    ablations,
    best_without_teacher,
    finetune_targets,
    full_plan,
    main_runs,
    method_overrides,
    registered_methods,
    second_stage_runs,
    teacher_of,
)
from shortcut_models.objectives import OBJECTIVES

METHODS = tuple(OBJECTIVES)
PINNED_RUNS = Path(__file__).with_name("data") / "study_runs_cb7ae8d.txt"


def test_default_plan_runs_every_method_recipe_seed_and_domain_once():
    plan = StudyPlan(methods=METHODS)
    runs = main_runs(plan)
    cells = Counter((r.domain, r.method, r.recipe, r.seed) for r in runs)
    assert set(cells.values()) == {1}
    # own recipes on both domains; the common recipe for flow matching, shortcut and MeanFlow on digits
    assert len(cells) == (2 * len(METHODS) + 3) * 3
    assert {r.method for r in runs if r.recipe == "common"} == {"flow", "shortcut", "meanflow"}
    assert {r.method for r in main_runs(full_plan()) if r.recipe == "common"} == {"flow", "shortcut"}
    assert len({r.name for r in runs}) == len(runs)
    assert {r.budgets for r in runs if r.domain == "digits"} == {(plan.steps,)}
    assert {r.budgets for r in runs if r.domain == "checkerboard"} == {(plan.toy_steps,)}


def test_full_plan_scores_budgets_on_the_way_except_length_scheduled_methods():
    plan = full_plan()
    assert plan.all_budgets() == (200, 400, 800) and plan.all_budgets()[-1] / plan.all_budgets()[0] == 4
    assert full_plan(steps=2000).all_budgets() == (500, 1000, 2000)
    assert full_plan(budgets=(10,)).budgets == (10,)
    runs = [r for r in main_runs(plan) if r.domain == "digits" and r.recipe == "own" and r.seed == 0]
    by_method = {m: [r.budgets for r in runs if r.method == m] for m in METHODS}
    for m in METHODS:
        if OBJECTIVES[m].schedule_spans_run:  # curriculum / stages spread over the run: one run per budget
            assert by_method[m] == [(b,) for b in plan.all_budgets()]
        else:
            assert by_method[m] == [plan.all_budgets()]
    # common recipe and MeanFlow's recipe: the largest budget only; MeanFlow's recipe for flow and shortcut
    others = [r for r in main_runs(plan) if r.domain == "digits" and r.recipe != "own"]
    assert {r.budgets for r in others} == {(plan.steps,)}
    assert {r.method for r in others if r.recipe == "meanflow"} == {"flow", "shortcut"}


def test_overrides_carry_the_recipe_and_the_schedule_at_a_tenth_of_the_first_largest_budget():
    plan = full_plan()
    assert method_overrides(plan, "meanflow", "own") == ()
    assert method_overrides(plan, "esc", "own") == ("terminal_steps=80",)
    assert method_overrides(plan, "sct", "common") == (*RECIPES["common"], "derivative_warmup_steps=80")
    assert method_overrides(plan, "meanflow", "ablation:no adaptive weight") == ("loss_weight=mse",)


def test_schedules_end_at_a_tenth_of_their_own_domains_budget():
    """The checkerboard's runs are toy_steps long: their schedules follow that budget, not the digits one."""
    plan = StudyPlan(steps=800, toy_steps=1000, methods=("esc", "sct", "flow"), seeds=(0,))
    overrides = {(r.domain, r.method): r.overrides for r in main_runs(plan) if r.recipe == "own"}
    assert overrides["digits", "esc"] == ("terminal_steps=80",)
    assert overrides["checkerboard", "esc"] == ("terminal_steps=100",)
    assert overrides["checkerboard", "sct"] == ("derivative_warmup_steps=100",)
    assert overrides["checkerboard", "flow"] == ()


def test_teachers_are_the_flow_run_of_the_same_domain_recipe_and_seed():
    plan = full_plan(common_methods=())
    runs = main_runs(plan)
    distill = next(r for r in runs if r.method == "consistency-distillation" and r.recipe == "common" and r.seed == 2)
    teacher = teacher_of(distill, plan)
    assert teacher in runs and (teacher.method, teacher.recipe, teacher.seed) == ("flow", "common", 2)
    assert teacher_of(next(r for r in runs if r.method == "meanflow"), plan) is None


def test_second_stage_ablates_the_winner_and_fine_tunes_from_the_flow_runs():
    plan = full_plan()
    winner = best_without_teacher({"flow": 900.0, "meanflow": 60.0, "consistency-distillation": 20.0, "esc": 70.0})
    assert winner == "meanflow"  # consistency distillation needs a teacher
    runs = second_stage_runs(plan, winner)
    ablated = [r for r in runs if r.recipe.startswith("ablation:")]
    assert len(ablated) == len(OBJECTIVES["meanflow"].ablations) * 3
    tuned = [r for r in runs if r.init]
    # shortcut, the winner, iMF and Decoupled MeanFlow (it declares that it starts from a flow-matching run)
    targets = ("shortcut", "meanflow", "imf", "decoupled-meanflow")
    assert finetune_targets(plan, winner) == targets
    assert {(r.method, r.init, r.budgets) for r in tuned} == {
        (m, s, (round(plan.steps * s),)) for m in targets for s in (0.25, 0.5)
    }
    own_flow = teacher_of(tuned[0], plan)
    assert own_flow in main_runs(plan) and own_flow.recipe == "own"
    assert len({r.name for r in runs}) == len(runs)


def test_fine_tuning_targets_are_deduplicated_and_limited_to_the_plans_methods():
    assert finetune_targets(full_plan(), "imf") == ("shortcut", "imf", "decoupled-meanflow")
    assert finetune_targets(full_plan(), "decoupled-meanflow") == ("shortcut", "decoupled-meanflow", "imf")
    # a study of some methods fine-tunes into those of them only (shortcut always, as before)
    assert finetune_targets(full_plan(methods=("flow", "meanflow")), "meanflow") == ("shortcut", "meanflow")
    chosen = full_plan(methods=("flow", "shortcut", "decoupled-meanflow"))
    assert finetune_targets(chosen, "shortcut") == ("shortcut", "decoupled-meanflow")
    assert [m for m in OBJECTIVES if OBJECTIVES[m].starts_from == "flow"] == ["decoupled-meanflow"]


def run_lines(label: str, plan: StudyPlan) -> dict[str, list[str]]:
    """Every run of ``plan`` as 'stage | name | overrides | budgets | init | teacher', by stage: the main runs,
    then the second stage for each method that can win it (one without a teacher, with an ablation)."""

    def line(run, stage):
        teacher = teacher_of(run, plan)
        fields = [stage, run.name, " ".join(run.overrides) or "-", ",".join(map(str, run.budgets))]
        return " | ".join([*fields, f"{run.init:g}", teacher.name if teacher else "-"])

    out = {f"{label} main": [line(r, f"{label} main") for r in main_runs(plan)]}
    for winner in (m for m in plan.methods if not OBJECTIVES[m].teacher_run and ablations(m)):
        stage = f"{label} winner={winner}"
        out[stage] = [line(r, stage) for r in second_stage_runs(plan, winner)]
    return {stage: lines for stage, lines in out.items() if lines}


def test_the_runs_are_those_of_the_plan_before_the_methods_declared_them():
    """The default and the full plan's runs (names, overrides, budgets, fine-tuning share, teacher), for
    every possible winner of the second stage, equal those the study planned at cb7ae8d, when its methods,
    schedule knobs, length-scheduled methods and ablations were lists in study_plan.py, plus the methods added
    since and the fine-tuning runs into iMF and Decoupled MeanFlow beside shortcut and the winner, with the
    sizes of then (800 steps by default; the full plan's common recipe for every method, one budget stage, no
    more seeds for the leaders, one checkerboard budget)."""
    pinned: dict[str, list[str]] = {}
    for row in PINNED_RUNS.read_text().splitlines():
        pinned.setdefault(row.split(" | ")[0], []).append(row)
    # what the full plan changed since: budgets from 1/8 of the largest, fine-tuning also at 10%, the common
    # recipe for every method, one budget stage, no more seeds for the leaders, one checkerboard budget
    before = {
        "toy_budgets": (),
        "common_methods": (),
        "max_steps": 0,
        "leader_seeds": (),
        "steps": 1000,
        "budgets": (125, 250, 500),
        "finetune": (0.1, 0.25, 0.5),
    }
    default = StudyPlan(steps=800, methods=METHODS)
    assert {**run_lines("default", default), **run_lines("full", full_plan(**before))} == pinned


def test_the_study_facts_are_declared_on_the_methods():
    assert registered_methods() == METHODS == full_plan().methods
    assert set(StudyPlan().methods) < set(METHODS) and StudyPlan().methods == tuple(
        m for m in METHODS if m in DEFAULT_METHODS
    )
    assert {m: OBJECTIVES[m].schedule_knob for m in METHODS if OBJECTIVES[m].schedule_knob} == {
        "esc": "terminal_steps",
        "sct": "derivative_warmup_steps",
    }
    assert [m for m in METHODS if OBJECTIVES[m].schedule_spans_run] == [
        "consistency-training",
        "progressive-distillation",
        "soflow",
        "alpha-flow",
    ]
    assert [m for m in METHODS if OBJECTIVES[m].teacher_run] == ["consistency-distillation", "progressive-distillation"]
    for m in METHODS:  # each ablation sets knobs of its own method
        for overrides in ablations(m).values():
            assert all(o.split("=")[0] in OBJECTIVES[m].knobs() for o in overrides), m


def test_the_full_plan_scores_the_checkerboard_at_its_own_budgets():
    """The checkerboard's runs under the main recipe are scored at a quarter, a half and all of its budget, one
    run per budget where the schedule spans the run; its other runs and the default plan's keep one budget."""
    plan = full_plan()
    assert plan.domain_budgets("checkerboard") == (250, 500, 1000)
    assert full_plan(toy_steps=400).domain_budgets("checkerboard") == (100, 200, 400)
    assert StudyPlan().domain_budgets("checkerboard") == (1000,)
    runs = [r for r in main_runs(plan) if r.domain == "checkerboard" and r.seed == 0]
    for m in METHODS:
        mine = [r.budgets for r in runs if r.method == m]
        if OBJECTIVES[m].schedule_spans_run:
            assert mine == [(250,), (500,), (1000,)]
        else:
            assert mine == [(250, 500, 1000)]
    # a distillation run on the checkerboard starts from the very flow-matching run the plan trains
    flow = next(r for r in runs if r.method == "flow")
    distilled = next(r for r in runs if r.method == "consistency-distillation")
    assert teacher_of(distilled, plan) == flow
    # a doubling of the digits budget leaves the checkerboard's budgets as they are
    from shortcut_models.experiments.study_plan import grown

    assert grown(plan).domain_budgets("checkerboard") == (250, 500, 1000)
