"""`shortcut demo` and `shortcut study`: --out checked before any work, the --quick budget they share,
explicit --steps / --eval-num winning over --quick's, and the study's --compare-with file read (or refused)
before any work."""

from __future__ import annotations

import pytest
import torch

from shortcut_models import cli
from shortcut_models.cli import demo, study
from shortcut_models.cli.quick import QUICK_EVAL_NUM, QUICK_OVERRIDES, QUICK_STEPS
from shortcut_models.experiments import DemoPlan, StudyPlan
from shortcut_models.experiments.study_answers import ComparedWith, Leader, StudyAnswers
from shortcut_models.experiments.study_plan import registered_methods


@pytest.fixture
def plans(monkeypatch, tmp_path) -> dict[str, object]:
    """The plan each command would run (nothing is trained): {"demo": DemoPlan, "study": StudyPlan}, and the
    answers the study would compare with ("study compared with")."""
    seen: dict[str, object] = {}

    def recorder(name):
        def run(out, plan, progress=True, jobs=1, compare_with=None):
            seen[name] = plan
            seen[f"{name} compared with"] = compare_with
            return out / "report.md"

        return run

    monkeypatch.setattr(demo, "run_demo", recorder("demo"))
    monkeypatch.setattr(study, "run_study", recorder("study"))
    return seen


@pytest.fixture
def no_work(monkeypatch):
    def work(*args, **kwargs):
        raise AssertionError("the command started working on bad input")

    monkeypatch.setattr(demo, "run_demo", work)
    monkeypatch.setattr(study, "run_study", work)


def _one_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(word in err for word in words), err
    return err


@pytest.mark.parametrize("command", ["demo", "study"])
def test_out_naming_an_existing_file_is_refused_before_work(command, no_work, tmp_path, capsys):
    (tmp_path / "file").write_text("keep me")
    assert cli.main([command, "--quick", "--quiet", "--out", str(tmp_path / "file")]) == 2
    _one_line(capsys, "--out", "is a file, not a directory")
    assert (tmp_path / "file").read_text() == "keep me"


@pytest.mark.parametrize("command", ["demo", "study"])
def test_out_below_a_file_or_empty_is_refused(command, no_work, tmp_path, capsys):
    (tmp_path / "file").write_text("keep me")
    assert cli.main([command, "--out", str(tmp_path / "file" / "run")]) == 2
    _one_line(capsys, "--out", "which is a file")
    assert cli.main([command, "--out", ""]) == 2
    _one_line(capsys, "--out")


def test_demo_and_study_share_the_quick_budget(plans, tmp_path):
    assert cli.main(["demo", "--quick", "--quiet", "--out", str(tmp_path / "d"), "lr=0.01"]) == 0
    assert cli.main(["study", "--quick", "--quiet", "--out", str(tmp_path / "s"), "lr=0.01"]) == 0
    d, s = plans["demo"], plans["study"]
    assert isinstance(d, DemoPlan) and isinstance(s, StudyPlan)
    for plan in (d, s):
        assert tuple(plan.overrides[: len(QUICK_OVERRIDES)]) == QUICK_OVERRIDES
        assert plan.overrides[-1] == "lr=0.01"  # the user's overrides come last: they win
        assert (plan.eval_num, plan.timing_repeats) == (QUICK_EVAL_NUM, 2)
    assert f"steps={QUICK_STEPS}" in d.overrides and (d.track_num, d.eval_steps) == (QUICK_EVAL_NUM, (1, 2, 4, 128))
    assert s.steps == QUICK_STEPS and not any(o.startswith("steps=") for o in s.overrides)


def test_without_quick_the_defaults_stand(plans, tmp_path):
    assert cli.main(["demo", "--quiet", "--out", str(tmp_path / "d"), "lr=0.01"]) == 0
    assert cli.main(["study", "--quiet", "--out", str(tmp_path / "s"), "lr=0.01"]) == 0
    assert plans["demo"] == DemoPlan(overrides=["lr=0.01"])
    assert plans["study"] == StudyPlan(overrides=["lr=0.01"])


@pytest.mark.parametrize("quick", [[], ["--quick"]], ids=["full", "quick"])
def test_study_steps_and_eval_num_win_over_quick(quick, plans, tmp_path):
    argv = ["study", *quick, "--steps", "8", "--eval-num", "30", "--quiet", "--out", str(tmp_path / "s")]
    assert cli.main(argv) == 0
    plan = plans["study"]
    assert (plan.steps, plan.eval_num) == (8, 30)
    assert (tuple(plan.overrides[: len(QUICK_OVERRIDES)]) == QUICK_OVERRIDES) == bool(quick)
    assert cli.main(["study", *quick, "--steps", "8", "--quiet", "--out", str(tmp_path / "s")]) == 0
    assert (plans["study"].steps, plans["study"].eval_num) == (8, QUICK_EVAL_NUM if quick else StudyPlan().eval_num)


def test_full_study_plan_and_its_budgets_below_steps(plans, tmp_path):
    from shortcut_models.experiments import full_plan

    assert cli.main(["study", "--full", "--quiet", "--out", str(tmp_path / "s")]) == 0
    assert plans["study"] == full_plan()
    assert cli.main(["study", "--full", "--steps", "600", "--quiet", "--out", str(tmp_path / "s")]) == 0
    assert plans["study"].budgets == (150, 300) and plans["study"].steps == 600


def test_full_study_doubles_up_to_max_steps_and_runs_where_asked(plans, tmp_path, capsys, monkeypatch):
    assert cli.main(["study", "--full", "--max-steps", "8000", "--quiet", "--out", str(tmp_path / "s")]) == 0
    assert (plans["study"].max_steps, plans["study"].device) == (8000, "cpu")
    assert cli.main(["study", "--max-steps", "8000", "--out", str(tmp_path / "s")]) == 2
    _one_line(capsys, "--max-steps applies to --full only")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for bad, words in (("cuda", "no CUDA GPU"), ("auto", "must be cpu, cuda or cuda:N"), ("gpu", "--device")):
        assert cli.main(["study", "--device", bad, "--out", str(tmp_path / "s")]) == 2
        _one_line(capsys, words)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cli.main(["study", "--device", "cuda:1", "--jobs", "4", "--quiet", "--out", str(tmp_path / "s")]) == 0
    assert plans["study"].device == "cuda:1"


def test_study_methods_list(plans, tmp_path, capsys):
    assert cli.main(["study", "--quiet", "--methods", "meanflow,esc", "--out", str(tmp_path / "s")]) == 0
    assert plans["study"].methods == ("flow", "meanflow", "esc")  # the study's order, flow matching added
    assert cli.main(["study", "--quiet", "--methods", "all", "--out", str(tmp_path / "s")]) == 0
    assert plans["study"].methods == registered_methods()
    for bad, words in (("flow,,esc", "empty or repeated"), ("esc,esc", "empty or repeated"), ("nope", "unknown")):
        assert cli.main(["study", "--methods", bad, "--out", str(tmp_path / "s")]) == 2
        _one_line(capsys, "--methods", words)


BAD_ANSWERS = [  # the contents of a --compare-with file -> what the one-line error must say
    ("not json {", "not a study answers file"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"format": 2}', "format 2, expected 1"),
    ('{"format": 1, "full": true, "budget": 0, "seeds": [0], "methods": ["flow"], "leaders": {}}', "budget 0"),
    ('{"format": 1, "full": true, "budget": 10, "seeds": [0], "methods": ["nosuch"], "leaders": {}}', "nosuch"),
    ('{"format": 1, "full": true, "budget": 10, "seeds": [0], "methods": ["flow"]}', "'leaders'"),
    (
        '{"format": 1, "full": true, "budget": 10, "seeds": [0], "methods": ["flow"], '
        '"leaders": {"1": [{"method": "flow", "fd": NaN, "half_width": null}]}}',
        "finite numbers",
    ),
    (
        '{"format": 1, "full": true, "budget": 10, "seeds": [0], "methods": ["flow"], '
        '"leaders": {"1": [{"method": "shortcut", "fd": 1.0, "half_width": null}]}}',
        "one of the methods compared",
    ),
    ('{"format": 1, "full": true, "budget": 10, "seeds": [0], "methods": ["flow"], "leaders": {"x": []}}', "'x'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_ANSWERS)
def test_a_malformed_answers_file_is_refused_before_work(text, message, no_work, tmp_path, capsys):
    bad = tmp_path / "answers.json"
    bad.write_text(text)
    assert cli.main(["study", "--quiet", "--compare-with", str(bad), "--out", str(tmp_path / "s")]) == 2
    _one_line(capsys, str(bad), message)
    assert not (tmp_path / "s").exists()


def test_a_pickle_or_a_folder_as_answers_file_is_refused(no_work, tmp_path, capsys):
    pickled = tmp_path / "answers.pkl"
    pickled.write_bytes(b"\x80\x04\x95\x00cos\nsystem\n")  # never unpickled: read as JSON text, refused
    assert cli.main(["study", "--compare-with", str(pickled), "--out", str(tmp_path / "s")]) == 2
    _one_line(capsys, str(pickled), "not a study answers file")
    assert cli.main(["study", "--compare-with", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    _one_line(capsys, "cannot read the study answers file", str(tmp_path))


def test_the_answers_file_reaches_the_study_and_a_missing_one_is_not_an_error(plans, tmp_path):
    missing = tmp_path / "none.json"
    assert cli.main(["study", "--quiet", "--compare-with", str(missing), "--out", str(tmp_path / "s")]) == 0
    assert plans["study compared with"] == ComparedWith(missing, None)
    assert cli.main(["study", "--quiet", "--out", str(tmp_path / "s")]) == 0
    assert plans["study compared with"] is None
    good = tmp_path / "answers.json"
    good.write_text(
        '{"format": 1, "full": true, "budget": 10, "seeds": [0, 1], "methods": ["flow", "imf"], '
        '"leaders": {"1": [{"method": "imf", "fd": 3.5, "half_width": 0.25}]}}'
    )
    assert cli.main(["study", "--quiet", "--compare-with", str(good), "--out", str(tmp_path / "s")]) == 0
    answers = StudyAnswers(True, 10, (0, 1), ("flow", "imf"), {1: (Leader("imf", 3.5, 0.25),)})
    assert plans["study compared with"] == ComparedWith(good, answers)
