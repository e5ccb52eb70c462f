"""The study's plan: every (domain, method, recipe, seed) once, budgets scored on the way where that equals
a shorter run, teachers, the ablation and the fine-tuning runs."""

from collections import Counter

from shortcut_models.experiments.study_plan import (
    ABLATIONS,
    LENGTH_SCHEDULED,
    METHODS,
    RECIPES,
    StudyPlan,
    best_without_teacher,
    full_plan,
    main_runs,
    method_overrides,
    second_stage_runs,
    teacher_of,
)


def test_default_plan_runs_every_method_recipe_seed_and_domain_once():
    plan = StudyPlan()
    runs = main_runs(plan)
    cells = Counter((r.domain, r.method, r.recipe, r.seed) for r in runs)
    assert set(cells.values()) == {1}
    # own recipes on both domains; the common recipe for flow matching, shortcut and MeanFlow on digits
    assert len(cells) == (2 * len(METHODS) + 3) * 3
    assert {r.method for r in runs if r.recipe == "common"} == {"flow", "shortcut", "meanflow"}
    assert {r.method for r in main_runs(full_plan()) if r.recipe == "common"} == set(METHODS)
    assert len({r.name for r in runs}) == len(runs)
    assert {r.budgets for r in runs if r.domain == "digits"} == {(plan.steps,)}
    assert {r.budgets for r in runs if r.domain == "checkerboard"} == {(plan.toy_steps,)}


def test_full_plan_scores_budgets_on_the_way_except_length_scheduled_methods():
    plan = full_plan()
    assert plan.all_budgets() == (125, 250, 500, 1000) and plan.all_budgets()[-1] / plan.all_budgets()[0] == 8
    assert full_plan(steps=2000).all_budgets() == (250, 500, 1000, 2000)
    assert full_plan(budgets=(10,)).budgets == (10,)
    runs = [r for r in main_runs(plan) if r.domain == "digits" and r.recipe == "own" and r.seed == 0]
    by_method = {m: [r.budgets for r in runs if r.method == m] for m in METHODS}
    for m in METHODS:
        if m in LENGTH_SCHEDULED:  # curriculum / stages spread over the run: one run per budget
            assert by_method[m] == [(b,) for b in plan.all_budgets()]
        else:
            assert by_method[m] == [plan.all_budgets()]
    # common recipe and MeanFlow's recipe: the largest budget only; MeanFlow's recipe for flow and shortcut
    others = [r for r in main_runs(plan) if r.domain == "digits" and r.recipe != "own"]
    assert {r.budgets for r in others} == {(plan.steps,)}
    assert {r.method for r in others if r.recipe == "meanflow"} == {"flow", "shortcut"}


def test_overrides_carry_the_recipe_and_the_schedule_at_a_tenth_of_the_largest_budget():
    plan = full_plan()
    assert method_overrides(plan, "meanflow", "own") == ()
    assert method_overrides(plan, "esc", "own") == ("terminal_steps=100",)
    assert method_overrides(plan, "sct", "common") == (*RECIPES["common"], "derivative_warmup_steps=100")
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
    plan = full_plan()
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
    ablations = [r for r in runs if r.recipe.startswith("ablation:")]
    assert len(ablations) == len(ABLATIONS["meanflow"]) * 3
    tuned = [r for r in runs if r.init]
    assert {(r.method, r.init, r.budgets) for r in tuned} == {
        (m, s, (round(plan.steps * s),)) for m in ("shortcut", "meanflow") for s in (0.1, 0.25, 0.5)
    }
    own_flow = teacher_of(tuned[0], plan)
    assert own_flow in main_runs(plan) and own_flow.recipe == "own"
    assert len({r.name for r in runs}) == len(runs)
