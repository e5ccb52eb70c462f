"""The study's answers as a small JSON file (OUT/answers.json), and whether another study's answers agree.

The answers: per sampling step count (1, 2 and 4), the best method by mean FD on digits under its own
recipe at the largest budget and every method tied with it within seed noise (Welch's t-test over seeds,
p < 0.05 after Holm's correction over the pairs of methods; best first), each with its mean FD and the
half-width of its 95% interval over seeds (null with one seed); beside them the budget, the seeds and the
methods compared. The default study reads the committed full study's file (``--compare-with``) and says,
per step count, whether its best method is the full study's best or tied with it there.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..objectives import OBJECTIVES
from ..outputs import write_json
from .goals import FEW
from .report import steps_label
from .study_plan import StudyPlan, method_title
from .study_scores import Scores, leaders

ANSWERS_FORMAT = 1  # the version of the file's layout; a file of another version is refused
MISSING_TEXT = "no committed full-study answers to compare with"


@dataclass(frozen=True)
class Leader:
    """A method among the best at one step count: its mean FD over seeds and 95% half-width (nan: one seed)."""

    method: str
    fd: float
    half_width: float

    def text(self) -> str:
        spread = "" if math.isnan(self.half_width) else f" ± {self.half_width:.2f}"
        return f"{method_title(self.method)} {self.fd:.2f}{spread}"


@dataclass(frozen=True)
class StudyAnswers:
    """One study's answers: per step count its leaders, best first; the budget, the seeds of its best-seeded
    methods (the first seeds and the leaders' extra ones) and the methods compared."""

    full: bool
    budget: int
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    leaders: dict[int, tuple[Leader, ...]]


@dataclass(frozen=True)
class ComparedWith:
    """The answers file given to compare with and what it holds (None: there is no file at ``path``)."""

    path: Path
    answers: StudyAnswers | None


def answers_of(scores: Scores, plan: StudyPlan) -> StudyAnswers:
    """The leaders at 1, 2 and 4 steps (those scored) at the plan's largest budget."""
    best = {}
    for n in FEW:
        names = leaders(scores, "fd_digits", "digits", plan.methods, "own", plan.steps, n)
        means = [scores.mean("fd_digits", "digits", m, "own", plan.steps, n) for m in names]
        if names:
            best[n] = tuple(Leader(m, s.mean, s.half_width) for m, s in zip(names, means))
    seeds = tuple(dict.fromkeys((*plan.seeds, *plan.leader_seeds)))
    return StudyAnswers(plan.ablation, plan.steps, seeds, tuple(plan.methods), best)


def write_answers(out: Path, answers: StudyAnswers) -> Path:
    """``out``/answers.json (plain JSON; a half-width of a single seed is written as null)."""
    leader_rows = {
        str(n): [
            {"method": b.method, "fd": b.fd, "half_width": None if math.isnan(b.half_width) else b.half_width}
            for b in best
        ]
        for n, best in answers.leaders.items()
    }
    data = {
        "format": ANSWERS_FORMAT,
        "full": answers.full,
        "budget": answers.budget,
        "seeds": list(answers.seeds),
        "methods": list(answers.methods),
        "leaders": leader_rows,
    }
    write_json(out / "answers.json", data)
    return out / "answers.json"


def read_answers(path: Path) -> ComparedWith:
    """The answers in ``path`` (answers None when there is no such file); UserError (exit code 2) naming the
    file when it cannot be read or is not an answers file of this layout."""
    if not path.exists():
        return ComparedWith(path, None)
    try:
        return ComparedWith(path, parse_answers(json.loads(path.read_text(encoding="utf-8"))))
    except OSError as exc:
        raise UserError(f"cannot read the study answers file {path}: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:  # not UTF-8 or not JSON (both ValueErrors), or wrong fields
        raise UserError(f"{path} is not a study answers file (answers.json of `shortcut study`): {exc}") from None


def parse_answers(data: Any) -> StudyAnswers:
    """A :class:`StudyAnswers` from the file's JSON; ValueError, KeyError or TypeError saying what is wrong."""
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("format") != ANSWERS_FORMAT:
        raise ValueError(f"format {data.get('format')!r}, expected {ANSWERS_FORMAT}")
    budget, seeds, methods = data["budget"], data["seeds"], data["methods"]
    if not (_is_int(budget) and budget > 0 and isinstance(seeds, list) and all(map(_is_int, seeds))):
        raise ValueError(f"budget {budget!r} and seeds {seeds!r}: expected a positive integer and integers")
    if not isinstance(methods, list) or not all(isinstance(m, str) and m in OBJECTIVES for m in methods):
        raise ValueError(f"methods {methods!r}: expected names of registered methods")
    if not isinstance(data["leaders"], dict) or not isinstance(data["full"], bool):
        raise TypeError("expected 'leaders' to be an object and 'full' true or false")
    best = {_step_count(k): tuple(_leader(b, methods) for b in rows) for k, rows in data["leaders"].items()}
    if any(not rows for rows in best.values()):
        raise ValueError("a step count without leaders")
    return StudyAnswers(data["full"], budget, tuple(seeds), tuple(methods), best)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _step_count(key: str) -> int:
    if not key.isdigit() or int(key) < 1:
        raise ValueError(f"step count {key!r}: expected a positive integer")
    return int(key)


def _leader(row: Any, methods: list[str]) -> Leader:
    """One leader of the file: a method of ``methods``, a finite FD and a half-width (null: one seed)."""
    if not isinstance(row, dict) or row.get("method") not in methods:
        raise ValueError(f"leader {row!r}: expected an object naming one of the methods compared")
    fd, half = row["fd"], row["half_width"]
    numbers = [fd] if half is None else [fd, half]
    if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in numbers):
        raise ValueError(f"leader {row!r}: expected finite numbers for fd and half_width")
    return Leader(row["method"], float(fd), math.nan if half is None else float(half))


def agreement_lines(scores: Scores, plan: StudyPlan, compared: ComparedWith | None) -> list[str]:
    """Per step count whether this study's best method is the other study's best or tied with it there
    (nothing when no file was given; one line when the file does not exist)."""
    if compared is None:
        return []
    if compared.answers is None:
        return ["", f"**Against the full study.** {MISSING_TEXT.capitalize()} (no file at {compared.path})."]
    there = compared.answers
    verdicts = [(n, step_agreement(scores, plan, there, n)) for n in FEW if n in there.leaders]
    verdicts = [(n, v) for n, v in verdicts if v]
    agreed = sum(v.startswith("agrees") for _, v in verdicts)
    name = "full study" if there.full else "study"
    head = (
        f"**Against the {name}'s answers** ({compared.path}: {there.budget} training steps, up to "
        f"{len(there.seeds)} seeds per method; here {plan.steps} steps, {seeds_text(plan)}). The best method here "
        f"agrees at {agreed} of "
        f"{len(verdicts)} step counts ('agrees': it is the {name}'s best or tied with it there within seed noise):"
    )
    return ["", head, "", *(f"- {steps_label(n)}: {v}" for n, v in verdicts)]


def seeds_text(plan: StudyPlan) -> str:
    """'3 seeds', or with extra seeds for the leaders '3 seeds, 5 for the leaders, flow matching and shortcut'."""
    more = len(set(plan.leader_seeds) - set(plan.seeds))
    tail = f", {len(plan.seeds) + more} for the leaders, flow matching and shortcut" if more else ""
    return f"{len(plan.seeds)} seeds{tail}"


def step_agreement(scores: Scores, plan: StudyPlan, there: StudyAnswers, n: int) -> str:
    """'agrees: ...', 'disagrees: ...' or 'not compared: ...' at ``n`` steps ('' when not scored here)."""
    here = leaders(scores, "fd_digits", "digits", plan.methods, "own", plan.steps, n)
    if not here:
        return ""
    best = here[0]
    mean = scores.mean("fd_digits", "digits", best, "own", plan.steps, n).text()
    listed = ", ".join(b.text() for b in there.leaders[n])
    if best not in there.methods:
        return f"not compared: {method_title(best)}, the best here ({mean}), was not in that study."
    inside = best in {b.method for b in there.leaders[n]}
    word, among = ("agrees", "is among") if inside else ("disagrees", "is not among")
    return f"{word}: {method_title(best)}, the best here ({mean}), {among} the best there ({listed})."
