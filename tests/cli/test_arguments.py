"""The shared argument types: one step-list parser for `sample --steps` and `eval --steps`, metric lists;
bad lists are refused in one line, exit code 2, before any work."""

from __future__ import annotations

import argparse

import pytest

from shortcut_models import cli
from shortcut_models.cli import evaluate, sample
from shortcut_models.cli.arguments import one_step, step_list


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    """Fail the test if a command gets as far as loading a checkpoint."""

    def work(*args, **kwargs):
        raise AssertionError("the command started working on bad input")

    monkeypatch.setattr(sample, "load_model", work)
    monkeypatch.setattr(evaluate, "load_model", work)


def _refused(argv: list[str], capsys, *words: str) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(word in err for word in words), err
    return err


@pytest.mark.parametrize(
    "text, steps",
    [("1,2,4", [1, 2, 4]), ("128", [128]), (" 4, 1 ", [4, 1]), ("2,1", [2, 1])],
)
def test_step_lists(text, steps):
    assert step_list(text) == steps


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "needs at least one step count"),
        (" ", "needs at least one step count"),
        ("1,,2", "empty item in '1,,2'"),
        ("1,2,", "empty item in '1,2,'"),
        (",1", "empty item in ',1'"),
        (",", "empty item in ','"),
        ("1,2,1", "1 appears twice in '1,2,1'"),
        ("1,01", "1 appears twice in '1,01'"),
        ("0", "integer from 1 to 128, got 0"),
        ("129", "integer from 1 to 128, got 129"),
        ("1,-2", "integer from 1 to 128, got -2"),
        ("abc", "integer from 1 to 128, got 'abc'"),
        ("1.5", "integer from 1 to 128, got '1.5'"),
        ("1;2", "integer from 1 to 128, got '1;2'"),
    ],
)
def test_bad_step_lists(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        step_list(text)


def test_sample_takes_exactly_one_step_count():
    assert one_step("4") == 4 and one_step(" 128 ") == 128
    with pytest.raises(argparse.ArgumentTypeError, match="takes one step count for sample, got 1,2"):
        one_step("1,2")
    with pytest.raises(argparse.ArgumentTypeError, match="empty item"):
        one_step("4,")  # the same parser as eval's: its checks first
    with pytest.raises(argparse.ArgumentTypeError, match="integer from 1 to 128"):
        one_step("0")


@pytest.mark.parametrize(
    "steps, message",
    [
        ("1,2", "takes one step count for sample"),
        ("1,,2", "empty item"),
        ("3,3", "3 appears twice"),
        ("", "needs at least one step count"),
        ("200", "integer from 1 to 128"),
        ("abc", "integer from 1 to 128"),
    ],
)
def test_sample_steps_through_the_command(steps, message, tmp_path, capsys):
    out = tmp_path / "new" / "s.npz"
    argv = ["sample", "--ckpt", str(tmp_path / "run"), "--steps", steps, "--out", str(out)]
    _refused(argv, capsys, "--steps", message)
    assert not out.parent.exists()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--steps", "1,,2", "empty item"),
        ("--steps", "1,2,", "empty item"),
        ("--steps", "", "needs at least one step count"),
        ("--steps", "1,2,1", "1 appears twice"),
        ("--steps", "0,1", "integer from 1 to 128"),
        ("--metrics", "fd-digits,,kid", "empty item"),
        ("--metrics", "fd-digits,kid,", "empty item"),
        ("--metrics", "", "needs at least one metric"),
        ("--metrics", "fd-digits,kid,kid", "kid appears twice"),
        ("--metrics", "fd-digits,bogus", "unknown metric 'bogus'"),
    ],
)
def test_eval_lists_through_the_command(option, value, message, tmp_path, capsys):
    out = tmp_path / "new"
    _refused(["eval", "--ckpt", str(tmp_path / "run"), option, value, "--out", str(out)], capsys, option, message)
    assert not out.exists()
