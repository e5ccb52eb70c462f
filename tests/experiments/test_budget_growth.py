"""The full study's budget grows while its answer moves: when the answer has settled (no leader swaps places
beyond seed noise, every leader's FD improves by less than 10% over the last doubling), how the runs continue
into the doubled budget, and the extra seeds of the leaders; from synthetic scores and one tiny real study."""

import json

import pytest
from fixtures.scores import SPREAD, score_rows

from shortcut_models import checkpoints as ckpt
from shortcut_models.experiments import study
from shortcut_models.experiments.budget_growth import (
    PLATEAU,
    keeps_growing,
    movement,
    plateaued,
    seed_methods,
    settled,
)
from shortcut_models.experiments.study_plan import StudyPlan, full_plan, grown, main_runs, method_overrides, stages
from shortcut_models.experiments.study_runs import scored_as_asked
from shortcut_models.experiments.study_scores import Scores

SEEDS = (0, 1, 2)
FD = {"flow": 300.0, "shortcut": 30.0, "meanflow": 20.0, "imf": 20.5, "consistency-distillation": 60.0}


def rows(table: dict[str, float], budget: int, spread=SPREAD) -> list[dict]:
    """FD rows of ``table[method]`` (the same at 1, 2 and 4 steps) at ``budget``, three seeds."""
    return score_rows({m: dict.fromkeys((1, 2, 4), v) for m, v in table.items()}, budget=budget, spread=spread)


PLAN = StudyPlan(steps=1000, budgets=(500,), methods=tuple(FD), domains=("digits",), max_steps=4000)


def test_the_answer_has_settled_when_leaders_hold_and_stop_improving():
    steady = Scores(rows(FD, 500) + rows({m: 0.95 * v for m, v in FD.items()}, 1000))
    assert settled(steady, PLAN) and not keeps_growing(steady, PLAN)
    move = movement(steady, PLAN, 1)
    assert move.leaders_after == ("meanflow", "imf") and move.swaps == () and move.improving == {}
    assert plateaued(steady, "flow", (500, 1000), 1, "own")


def test_a_leader_still_improving_by_a_tenth_or_more_keeps_the_budget_growing():
    later = {m: 0.95 * v for m, v in FD.items()}
    later["imf"] = 0.88 * FD["imf"]  # 12% better: still a leader, still improving
    scores = Scores(rows(FD, 500) + rows(later, 1000))
    move = movement(scores, PLAN, 2)
    assert move.improving == {"imf": pytest.approx(0.12)} and not move.settled
    assert keeps_growing(scores, PLAN)
    assert not plateaued(scores, "imf", (500, 1000), 1, "own") and PLATEAU == 0.10
    # no doubling past max_steps, and none with one budget only
    assert not keeps_growing(scores, StudyPlan(**{**PLAN.__dict__, "max_steps": 1999}))
    assert movement(scores, StudyPlan(steps=1000, methods=tuple(FD), domains=("digits",)), 1) is None


def test_a_swap_with_a_leader_beyond_seed_noise_keeps_the_budget_growing():
    later = dict(FD)
    later["consistency-distillation"] = 10.0  # from behind MeanFlow to ahead of it, beyond seed noise
    scores = Scores(rows(FD, 500) + rows(later, 1000))
    move = movement(scores, PLAN, 1)
    assert ("meanflow", "consistency-distillation") in move.swaps and not settled(scores, PLAN)
    assert move.leaders_before == ("meanflow", "imf") and move.leaders_after == ("consistency-distillation",)


def test_more_seeds_go_to_the_leaders_flow_matching_and_shortcut():
    scores = Scores(rows(FD, 1000))
    assert seed_methods(scores, PLAN) == ("flow", "shortcut", "meanflow", "imf")


def test_a_doubled_plan_keeps_its_runs_and_their_schedules():
    plan = full_plan(steps=1000)
    bigger = grown(plan)
    assert (bigger.steps, bigger.budgets, bigger.grown) == (2000, (250, 500, 1000), (1000,))
    assert [s.steps for s in stages(grown(bigger))] == [1000, 2000, 4000]
    assert stages(bigger)[0] == plan
    # schedules counted in steps stay set by the first stage, so every run resumes with its own settings
    assert method_overrides(bigger, "esc", "own") == method_overrides(plan, "esc", "own") == ("terminal_steps=100",)
    before = {r.name: r for r in main_runs(plan)}
    after = {r.name: r for r in main_runs(bigger)}
    assert set(before) <= set(after)
    flow = after["digits/flow-own-seed0"]
    assert flow.budgets == (250, 500, 1000, 2000) and flow.overrides == before[flow.name].overrides
    # a distillation run past the first stage is a run of its own, from its teacher at that budget
    cd = [
        r
        for r in after.values()
        if r.method == "consistency-distillation" and r.seed == 0 and r.recipe == "own" and r.domain == "digits"
    ]
    assert [(r.name, r.budgets) for r in cd] == [
        ("digits/consistency-distillation-own-seed0", (250, 500, 1000)),
        ("digits/consistency-distillation-own-seed0-2000steps", (2000,)),
    ]
    common = after["digits/shortcut-common-seed0"]
    assert common.budgets == (2000,)  # the other recipes continue to the largest budget


def test_scores_of_a_former_largest_budget_hold_the_step_counts_of_a_smaller_one():
    saved = {"num": 1000, "steps": [1, 2, 4, 8, 128], "k": 3, "seed": 0, "budget": 1000, "measures": ["fd"]}
    assert scored_as_asked(saved, {**saved, "steps": [1, 2, 4, 128]})
    assert not scored_as_asked(saved, {**saved, "steps": [1, 3]})
    assert not scored_as_asked(saved, {**saved, "steps": [1, 2], "num": 500})


def test_a_study_doubles_its_budget_resuming_its_runs(tmp_path, monkeypatch):
    """Forced to grow once (2 -> 4 steps), the study continues its runs, trains the distillation run of the
    new budget from the teacher at that budget, scores the first stage's largest budget at few step counts, and
    its flow-matching scores at 4 steps equal those of runs planned at 4 steps from the start."""
    sizes = {
        "methods": ("flow", "consistency-distillation"),
        "domains": ("digits",),
        "seeds": (0,),
        "eval_num": 16,
        "eval_steps": (1, 4, 128),
        "budget_eval_steps": (1, 4),
        "overrides": ["model=DiT-Nano", "batch_size=8", "log_every=1", "sample_steps=[1]"],
    }
    growing = StudyPlan(steps=2, budgets=(1,), max_steps=4, leader_seeds=(1,), recipes=("own",), **sizes)
    calls = []
    monkeypatch.setattr(study, "keeps_growing", lambda s, p: (calls.append(p.steps), p.steps < p.max_steps)[1])
    out = tmp_path / "grown"
    plan, scores = study.grow_until_settled(out, growing, progress=False, jobs=1)
    assert calls == [2, 4] and plan.steps == 4 and plan.grown == (2,)
    assert ckpt.latest_checkpoint(out / "runs/digits/consistency-distillation-own-seed0-4steps").name.endswith("4")
    assert ckpt.latest_checkpoint(out / "runs/digits/consistency-distillation-own-seed0").name.endswith("2")
    # the first stage's largest budget was scored at the smaller budgets' step counts only, while it could double
    first = json.loads((out / "scores/digits/flow-own-seed0/2.json").read_text())
    assert first["settings"]["steps"] == [1, 4] and {r["steps"] for r in first["rows"]} == {1, 4}
    final = json.loads((out / "scores/digits/flow-own-seed0/4.json").read_text())
    assert final["settings"]["steps"] == [1, 4, 128]
    # the leaders' seeds go through the same stages
    more = study.more_seeds(out, plan, ("flow",), progress=False, jobs=1)
    assert {(r["seed"], r["budget"]) for r in more} == {(1, 1), (1, 2), (1, 4)}
    straight_plan = StudyPlan(steps=4, budgets=(1, 2), recipes=("own",), **{**sizes, "methods": ("flow",)})
    straight = study.execute(tmp_path / "straight", straight_plan, main_runs(straight_plan), progress=False, jobs=1)
    at_4 = [(r["steps"], r["fd_digits"]) for r in scores.rows if r["method"] == "flow" and r["budget"] == 4]
    assert at_4 == [(r["steps"], r["fd_digits"]) for r in straight if r["budget"] == 4]
