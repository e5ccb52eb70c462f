"""What a study will do before it does it (``shortcut study --dry-run``): its runs, training steps and scores
stage by stage, as the study's caches count them (a run continued into a doubled budget adds only its new
steps), and about how long they take on this machine.

The time comes from three measurements made here and now, with the threads one job gets: flow matching's
training step on each domain, and one score at 1 and at 8 sampling steps (a fixed part and a part per step),
and from each method's cost model (``Objective.step_cost``, relative to flow matching; the study's report
compares it with the measured ratios). Runs are assumed to pack perfectly onto the jobs. Which methods lead,
and so get the extra seeds, and which method is ablated are known only once the runs are scored: the estimate
gives the extra seeds to the methods of `make study` (the last full study's leaders, flow matching and shortcut)
and ablates the costliest candidate.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..objectives import OBJECTIVES, build_objective
from .report import fmt_minutes
from .study_plan import (
    DEFAULT_METHODS,
    TEACHER,
    Run,
    StudyPlan,
    ablations,
    grown,
    main_runs,
    second_stage_runs,
    seed_stages,
)
from .study_runs import SCORERS, run_config, score_settings
from .timing import interleaved_step_times
from .train import build_trainer


@dataclass
class Work:
    """What one stage adds: runs trained or continued, training steps by (domain, method), scores by (domain,
    sampling step counts)."""

    name: str
    runs: int = 0
    steps: Counter = field(default_factory=Counter)
    scores: Counter = field(default_factory=Counter)


@dataclass
class Ledger:
    """What the stages before have trained (run name -> steps) and scored ((run name, budget) -> step counts)."""

    trained: dict[str, int] = field(default_factory=dict)
    scored: dict[tuple[str, int], tuple[int, ...]] = field(default_factory=dict)

    def add(self, work: Work, plan: StudyPlan, runs: list[Run]) -> Work:
        """Count into ``work`` what ``runs`` under ``plan`` add to what is done; returns ``work``."""
        for run in dict.fromkeys(runs):
            new = run.steps - self.trained.get(run.name, 0)
            if new > 0:
                work.runs += 1
                work.steps[run.domain, run.method] += new
                self.trained[run.name] = run.steps
            for budget in run.budgets:
                asked = tuple(score_settings(plan, run, budget)["steps"])
                if not set(asked) <= set(self.scored.get((run.name, budget), ())):
                    work.scores[run.domain, asked] += 1
                    self.scored[run.name, budget] = asked
        return work


def planned_work(plan: StudyPlan, grows: bool) -> list[Work]:
    """The work of each stage of :func:`~.study.run_plan` when the answer settles at the first stage (``grows``
    False) or the budget doubles up to ``plan.max_steps``: the main runs, the leaders' extra seeds, then the
    ablation and fine-tuning."""
    ledger, out, stage = Ledger(), [], plan
    while True:
        may_grow = stage.can_double()
        work = ledger.add(
            Work(f"main runs to {stage.steps:,} steps"), replace(stage, settling=may_grow), main_runs(stage)
        )
        out.append(work)
        if not (grows and may_grow):
            break
        stage = grown(stage)
    if stage.can_double():  # settled while it could still double: every step count at its largest budget
        ledger.add(out[-1], stage, main_runs(stage))
    if stage.leader_seeds:
        seeds = Work(f"{len(stage.leader_seeds)} more seeds")
        for step, runs in seed_stages(stage, [m for m in stage.methods if m in DEFAULT_METHODS]):
            ledger.add(seeds, step, runs)
        out.append(seeds)
    if stage.ablation or stage.finetune:
        second = Work("ablation and fine-tuning" if stage.ablation else "fine-tuning")
        out.append(ledger.add(second, stage, second_stage_runs(stage, costliest_ablation(stage))))
    return out


def costliest_ablation(plan: StudyPlan) -> str:
    """The candidate for the ablation (no teacher run, an ablation table) whose ablation costs the most."""
    candidates = [m for m in plan.methods if not OBJECTIVES[m].teacher_run and ablations(m)]
    return max(candidates, key=lambda m: len(ablations(m)) * step_ratio(plan, m))


def step_ratio(plan: StudyPlan, method: str) -> float:
    """A method's training step relative to flow matching's, by its cost model, at the digits batch size."""
    cfg = run_config(Path("."), plan, Run("digits", method, plan.main_recipe, 0, (plan.steps,)), plan.steps)
    return build_objective(method, 0, cfg.objective_args).step_cost(cfg.batch_size)


@dataclass(frozen=True)
class Rates:
    """Seconds measured on this machine, per domain: flow matching's training step, and a score as a fixed part
    plus a part per sampling step."""

    step: dict[str, float]
    score_fixed: dict[str, float]
    score_per_step: dict[str, float]


def measure_rates(plan: StudyPlan, threads: int) -> Rates:
    """Flow matching's step time (median of 10 after 3 warm-up steps) and a score at 1 and at 8 sampling steps
    of a one-step run, on each of the plan's domains, with ``threads`` threads (one job's share)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    step, fixed, per_step = {}, {}, {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for domain in plan.domains:
                run = Run(domain, TEACHER, plan.main_recipe, 0, (1,))
                cfg = run_config(Path(tmp), plan, run, 1, ("logger=none",))
                trainer = build_trainer(cfg, Path(tmp) / domain, progress=False)
                trainer.run()
                step[domain] = statistics.median(interleaved_step_times({TEACHER: trainer}, 10)[TEACHER])
                one, eight = (_score_seconds(plan, domain, Path(tmp) / domain, n) for n in (1, 8))
                per_step[domain] = max(0.0, (eight - one) / 7)
                fixed[domain] = max(0.0, one - per_step[domain])
    finally:
        torch.set_num_threads(before)
    return Rates(step, fixed, per_step)


def _score_seconds(plan: StudyPlan, domain: str, path: Path, steps: int) -> float:
    settings = score_settings(plan, Run(domain, TEACHER, plan.main_recipe, 0, (1,)), 1) | {"steps": [steps]}
    t0 = time.perf_counter()
    SCORERS[domain](plan, path, settings, False)
    return time.perf_counter() - t0


def work_seconds(work: Work, rates: Rates, ratios: dict[str, float]) -> float:
    """Seconds of one job for ``work``: training steps at flow matching's measured step times the method's cost
    model, scores at their measured fixed and per-step parts."""
    train = sum(n * rates.step[d] * ratios[m] for (d, m), n in work.steps.items())
    score = sum(k * (rates.score_fixed[d] + rates.score_per_step[d] * sum(s)) for (d, s), k in work.scores.items())
    return train + score


def estimate_lines(plan: StudyPlan, jobs: int, rates: Rates) -> list[str]:
    """The dry run's text: the rates measured here, then each stage's work and time when the answer settles at
    the first stage and, where the plan may double its budget, when it doubles up to ``plan.max_steps``."""
    cases = [(False, f"the answer settles at {plan.steps:,} steps")]
    if plan.can_double():
        cases.append((True, f"the budget doubles up to {plan.max_steps:,} steps"))
    planned = [(text, planned_work(plan, grows)) for grows, text in cases]
    methods = {m for _, works in planned for w in works for _, m in w.steps}  # fine-tuning targets included
    ratios = {m: step_ratio(plan, m) for m in methods}
    lines = ["Measured here (one job's threads): " + "; ".join(_rate_text(plan, rates, d) for d in plan.domains) + "."]
    for text, works in planned:
        total = sum(work_seconds(w, rates, ratios) for w in works) / jobs
        lines += ["", f"If {text}: about {_duration(total)} with {jobs} run(s) at a time."]
        lines += [f"- {_work_text(w)}: about {fmt_minutes(work_seconds(w, rates, ratios) / jobs)}" for w in works]
    return lines


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} hours" if seconds >= 3600 else fmt_minutes(seconds)


def _rate_text(plan: StudyPlan, rates: Rates, domain: str) -> str:
    num = plan.eval_num if domain == "digits" else plan.toy_num
    return (
        f"{domain}: a flow-matching step {rates.step[domain] * 1e3:.0f} ms, a score of {num:,} samples "
        f"{rates.score_fixed[domain]:.1f} s plus {rates.score_per_step[domain]:.2f} s per sampling step"
    )


def _work_text(work: Work) -> str:
    steps = Counter()
    for (domain, _), n in work.steps.items():
        steps[domain] += n
    trained = ", ".join(f"{n:,} {d} training steps" for d, n in steps.items()) or "no training"
    return f"{work.name}: {work.runs} run(s), {trained}, {sum(work.scores.values())} score(s)"
