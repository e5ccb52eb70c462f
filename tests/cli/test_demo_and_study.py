"""`shortcut demo` and `shortcut study`: --out checked before any work, the --quick budget they share,
and explicit --steps / --eval-num winning over --quick's."""

from __future__ import annotations

import pytest

from shortcut_models import cli
from shortcut_models.cli import demo, study
from shortcut_models.cli.quick import QUICK_EVAL_NUM, QUICK_OVERRIDES, QUICK_STEPS
from shortcut_models.experiments import DemoPlan, StudyPlan


@pytest.fixture
def plans(monkeypatch, tmp_path) -> dict[str, object]:
    """The plan each command would run (nothing is trained): {"demo": DemoPlan, "study": StudyPlan}."""
    seen: dict[str, object] = {}

    def recorder(name):
        def run(out, plan, progress=True, jobs=1):
            seen[name] = plan
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
    assert plans["study"].budgets == (75, 150, 300) and plans["study"].steps == 600


def test_study_methods_list(plans, tmp_path, capsys):
    assert cli.main(["study", "--quiet", "--methods", "meanflow,esc", "--out", str(tmp_path / "s")]) == 0
    assert plans["study"].methods == ("flow", "meanflow", "esc")  # the study's order, flow matching added
    for bad, words in (("flow,,esc", "empty or repeated"), ("esc,esc", "empty or repeated"), ("nope", "unknown")):
        assert cli.main(["study", "--methods", bad, "--out", str(tmp_path / "s")]) == 2
        _one_line(capsys, "--methods", words)
