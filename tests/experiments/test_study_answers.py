"""The short answer's additions, from hand-made scores: the field's order at scale against the digits order
(agrees / disagrees / cannot tell), the answers file written and read back, the agreement with another
study's answers, and the two questions answered in one line each."""

import json
import math
from pathlib import Path

from fixtures.scores import score_rows

from shortcut_models.experiments.field_order import FIELD_ONE_STEP, field_order_lines, field_pairs
from shortcut_models.experiments.report import finetune_answer, many_steps_answer
from shortcut_models.experiments.study_answers import (
    ComparedWith,
    Leader,
    StudyAnswers,
    agreement_lines,
    answers_of,
    read_answers,
    seeds_text,
    write_answers,
)
from shortcut_models.experiments.study_plan import StudyPlan
from shortcut_models.experiments.study_scores import Scores
from shortcut_models.metrics.seed_intervals import seed_mean

BUDGET = StudyPlan().steps


def rows_of(table, recipe="own", budget=BUDGET, init=0.0, seeds=(0, 1, 2)):
    """Digits rows with ``table[method][steps]`` as the mean FD over the seeds."""
    return score_rows(table, recipe=recipe, budget=budget, init=init, seeds=seeds)


# At scale (best first): iMF 1.72, ESC 2.85, MeanFlow 3.43, IMM 7.77, shortcut 10.6. On digits ESC is last,
# MeanFlow and IMM are 0.5 apart (a tie at this spread), every other gap is 10 or more (significant).
FD = {
    "flow": {1: 300.0, 2: 100.0, 4: 40.0, 128: 10.0},
    "shortcut": {1: 30.0, 2: 25.0, 4: 20.0, 128: 12.0},
    "meanflow": {1: 20.0, 2: 15.0, 4: 12.0, 128: 9.0},
    "esc": {1: 40.0, 2: 26.0, 4: 21.0, 128: 11.0},
    "imf": {1: 10.0, 2: 14.8, 4: 12.2, 128: 9.5},
    "imm": {1: 20.5, 2: 35.0, 4: 22.0, 128: 10.5},
}
PLAN = StudyPlan(methods=tuple(FD), domains=("digits",))


def test_the_published_order_is_the_reference_files():
    fid = {m: score.fid for m, score in FIELD_ONE_STEP.items()}
    assert {m: fid[m] for m in ("imf", "esc", "meanflow", "imm", "shortcut")} == {
        "imf": 1.72,
        "esc": 2.85,
        "meanflow": 3.43,
        "imm": 7.77,
        "shortcut": 10.6,
    }
    assert all(score.source and score.network for score in FIELD_ONE_STEP.values())


def test_field_order_pairs_agree_disagree_or_cannot_tell():
    assert field_pairs(Scores(rows_of(FD)), PLAN) == {
        "agrees": [
            ("imf", "esc"),
            ("imf", "meanflow"),
            ("imf", "imm"),
            ("imf", "shortcut"),
            ("meanflow", "shortcut"),
            ("imm", "shortcut"),
        ],
        "disagrees": [("esc", "meanflow"), ("esc", "imm"), ("esc", "shortcut")],
        "cannot tell": [("meanflow", "imm")],
    }
    (_, text) = field_order_lines(Scores(rows_of(FD)), PLAN)
    assert text.startswith("**Against the field's order at scale.**")
    assert ": iMF 1.72, ESC 2.85, MeanFlow 3.43, IMM 7.77, shortcut 10.6. On digits" in text
    assert (
        "iMF (10.00 ± 1.24) > MeanFlow (20.00 ± 1.24) ≈ IMM (20.50 ± 1.24) > shortcut (30.00 ± 1.24) > ESC "
        "(40.00 ± 1.24). Of the 10 pairs, 6 agree (iMF ahead of ESC, iMF ahead of MeanFlow, " in text
    )
    assert "; 3 disagree (ESC ahead of MeanFlow at scale, behind on digits; ESC ahead of IMM" in text
    assert "; 1 cannot tell, tied on digits (MeanFlow and IMM). Only the order is compared" in text


def test_field_order_ties_are_judged_over_every_pair_of_the_column():
    # MeanFlow and shortcut alone differ (p 0.031); with flow matching in the column (3 pairs, Holm) they tie
    close = {"meanflow": {1: 10.0}, "shortcut": {1: 11.33}, "flow": {1: 12.55}}
    plan = StudyPlan(methods=("flow", "shortcut", "meanflow"), domains=("digits",))
    assert field_pairs(Scores(rows_of(close)), plan) == {
        "agrees": [],
        "disagrees": [],
        "cannot tell": [("meanflow", "shortcut")],
    }
    # fewer than two methods with a published score: no paragraph
    assert field_order_lines(Scores(rows_of({"flow": {1: 9.0}, "imf": {1: 5.0}})), PLAN) == []


def test_the_answers_file_round_trips_as_plain_json(tmp_path):
    scores = Scores(rows_of(FD))
    answers = answers_of(scores, PLAN)
    mean = seed_mean([10.0, 10.5, 9.5])
    assert answers.leaders[1] == (Leader("imf", mean.mean, mean.half_width),)
    assert [b.method for b in answers.leaders[2]] == ["imf", "meanflow"]
    assert (answers.full, answers.budget, answers.seeds, answers.methods) == (False, BUDGET, (0, 1, 2), PLAN.methods)
    # the leaders' extra seeds count among the seeds of the answers, and the texts say who has them
    more = StudyPlan(methods=tuple(FD), leader_seeds=(3, 4))
    assert answers_of(scores, more).seeds == (0, 1, 2, 3, 4)
    assert seeds_text(more) == "3 seeds, 5 for the leaders, flow matching and shortcut"
    assert seeds_text(PLAN) == "3 seeds"
    path = write_answers(tmp_path, answers)
    data = json.loads(path.read_text())
    assert data["leaders"]["1"] == [{"method": "imf", "fd": 10.0, "half_width": mean.half_width}]
    assert read_answers(path) == ComparedWith(path, answers)
    # one seed: no interval, written as null and read back as nan
    single = answers_of(Scores(rows_of(FD, seeds=(0,))), StudyPlan(methods=tuple(FD), seeds=(0,)))
    write_answers(tmp_path, single)
    assert json.loads(path.read_text())["leaders"]["4"][0]["half_width"] is None
    back = read_answers(path).answers
    assert math.isnan(back.leaders[4][0].half_width) and back.leaders[4][0].fd == single.leaders[4][0].fd
    assert read_answers(tmp_path / "none.json") == ComparedWith(tmp_path / "none.json", None)


def test_agreement_with_another_studys_answers():
    there = StudyAnswers(
        full=True,
        budget=1000,
        seeds=(0, 1, 2),
        methods=("flow", "shortcut", "meanflow", "imf", "imm"),  # no ESC
        leaders={
            1: (Leader("meanflow", 9.0, 1.0), Leader("imf", 9.5, 2.0)),  # iMF, best here, tied with the best there
            2: (Leader("meanflow", 14.0, 0.5),),  # iMF is best here: disagrees
            4: (Leader("esc", 11.0, 0.5),),  # MeanFlow is best here (ESC not run): disagrees
        },
    )
    plan = StudyPlan(methods=("flow", "shortcut", "meanflow", "imf", "imm"), domains=("digits",))
    table = {m: FD[m] for m in plan.methods}
    lines = agreement_lines(Scores(rows_of(table)), plan, ComparedWith(Path("full/answers.json"), there))
    assert lines[1] == (
        "**Against the full study's answers** (full/answers.json: 1000 training steps, up to 3 seeds per method; "
        "here 1600 steps, 3 seeds). The best method here agrees at 1 of 3 step counts ('agrees': it is the full study's best or "
        "tied with it there within seed noise):"
    )
    assert lines[3:] == [
        "- 1 step: agrees: iMF, the best here (10.00 ± 1.24), is among the best there (MeanFlow 9.00 ± 1.00, "
        "iMF 9.50 ± 2.00).",
        "- 2 steps: disagrees: iMF, the best here (14.80 ± 1.24), is not among the best there (MeanFlow 14.00 ± 0.50).",
        "- 4 steps: disagrees: MeanFlow, the best here (12.00 ± 1.24), is not among the best there (ESC 11.00 ± 0.50).",
    ]
    with_esc = Scores(rows_of(FD))
    missing = agreement_lines(with_esc, PLAN, ComparedWith(Path("docs/study/full/answers.json"), None))
    assert missing == [
        "",
        "**Against the full study.** No committed full-study answers to compare with (no file at "
        "docs/study/full/answers.json).",
    ]
    assert agreement_lines(with_esc, PLAN, None) == []


def test_a_leader_missing_from_the_other_study_is_not_compared():
    there = StudyAnswers(False, 800, (0,), ("flow", "meanflow"), {1: (Leader("meanflow", 9.0, math.nan),)})
    lines = agreement_lines(Scores(rows_of(FD)), PLAN, ComparedWith(Path("a.json"), there))
    assert lines[-1] == "- 1 step: not compared: iMF, the best here (10.00 ± 1.24), was not in that study."
    assert "agrees at 0 of 1 step counts ('agrees': it is the study's best" in lines[1]


def test_the_two_questions_in_one_line_each():
    scores = Scores(rows_of(FD))
    assert many_steps_answer(scores, PLAN) == (
        "**No: it is worse**: at 128 sampling steps, both under the own recipe for 1600 training steps, shortcut "
        "FD 12.00 ± 1.24 against flow matching 10.00 ± 1.24 (verdict: Welch's t-test over seeds, p < 0.05)."
    )
    common = Scores(scores.rows + rows_of({"flow": {128: 10.0}, "shortcut": {128: 10.2}}, recipe="common"))
    assert many_steps_answer(common, PLAN).startswith("**No: tied**: at 128 sampling steps, both under the common")
    assert finetune_answer(scores, PLAN, None) == "Not asked here (`shortcut study --full` asks it)."
    tuned = rows_of({"shortcut": {1: 60.0}}, budget=round(PLAN.steps * 0.1), init=0.1) + rows_of(
        {"shortcut": {1: 30.4}}, budget=round(PLAN.steps * 0.25), init=0.25
    )
    assert finetune_answer(Scores(scores.rows + tuned), PLAN, None) == (
        "**Yes**, at 1 step, fine-tuned from the 1600-step flow-matching run for a share of that budget against "
        "the same method trained from scratch for 1600 steps: shortcut matches it with 25% of the budget (FD "
        "30.40 ± 1.24 against 30.00 ± 1.24: tie) (verdicts: Welch's t-test over seeds, p < 0.05)."
    )
    worse = rows_of({"shortcut": {1: 60.0}}, budget=round(PLAN.steps * 0.1), init=0.1) + rows_of(
        {"shortcut": {1: 40.0}}, budget=round(PLAN.steps * 0.25), init=0.25
    )
    assert finetune_answer(Scores(scores.rows + worse), PLAN, None).startswith("**No**, at 1 step")
    assert "shortcut does not, even with 25% (FD 40.00 ± 1.24 against 30.00 ± 1.24: worse)" in finetune_answer(
        Scores(scores.rows + worse), PLAN, None
    )


def test_the_finetune_section_and_the_short_answer_use_one_rule():
    """A share whose mean FD is above from scratch's but within seed noise matches, in both places (the full
    study of 2026-12-07 said 'matches' in the short answer and 'no share matches' in its section)."""
    from shortcut_models.experiments.report import finetune_question

    scores = rows_of(FD)
    tied_above = rows_of({"shortcut": {1: 31.0}}, budget=round(PLAN.steps * 0.25), init=0.25)
    worse_then_tied = rows_of({"shortcut": {1: 40.0}}, budget=round(PLAN.steps * 0.25), init=0.25) + rows_of(
        {"shortcut": {1: 30.8}}, budget=round(PLAN.steps * 0.5), init=0.5
    )
    for tuned, share in ((tied_above, "25%"), (worse_then_tied, "50%")):
        both = Scores(scores + tuned)
        section = [line for line in finetune_question(both, PLAN, None) if line.startswith("- shortcut:")]
        assert section == [
            f"- shortcut: fine-tuning matches training from scratch at 1 step (a tie or better) with {share} of the "
            "budget (on top of the flow-matching run)."
        ]
        assert f"shortcut matches it with {share} of the budget" in finetune_answer(both, PLAN, None)
    worse = Scores(scores + rows_of({"shortcut": {1: 40.0}}, budget=round(PLAN.steps * 0.25), init=0.25))
    assert "- shortcut: no fine-tuning share tried here matches training from scratch at 1 step (each is worse)." in (
        finetune_question(worse, PLAN, None)
    )
    assert "shortcut does not, even with 25%" in finetune_answer(worse, PLAN, None)
