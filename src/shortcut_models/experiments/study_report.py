"""The study's report: short answer first, then each method's own recipe with its source, tables with 95%
intervals over seeds, rankings that say which gaps are significant (Welch's t-test, Holm-corrected over the pairs
of methods compared), the recipe's share, the second metric and domain, budgets (budget_report.py), the ranking
at equal training cost, ablation, the two questions and the cost per step, as Markdown (OUT/report.md)."""

from __future__ import annotations

from pathlib import Path
from statistics import stdev

from ..metrics.seed_intervals import ALPHA, compare, seed_mean, seeds_to_separate
from ..objectives import OBJECTIVES
from .budget_report import budget_section, checkerboard_budget_section
from .equal_cost import equal_cost_section
from .field_order import field_order_lines
from .goals import FEW
from .recipe_table import recipes_section
from .report import (
    cost_section,
    finetune_question,
    fmt_minutes,
    goals_section,
    grids_section,
    many_steps_question,
    mean_table,
    optimiser_text,
    question_answers,
    reproduce_section,
    steps_label,
    write_report,
)
from .study_answers import ComparedWith, agreement_lines, seeds_text
from .study_plan import (
    MEANFLOW_RECIPE_METHODS,
    RECIPE_TEXT,
    TEACHER,
    StudyPlan,
    ablations,
    full_plan,
    method_title,
    registered_methods,
)
from .study_scores import Scores, StudyResults, column, leaders, ordered

HOLM_TEXT = "Holm's correction over the pairs of methods compared at that step count"
SECOND = "nn1_accuracy"  # the second digits metric (1-NN two-sample accuracy; 0.5 = indistinguishable)
METRIC_TEXT = {
    "fd_digits": "FD (digits-CNN features)",
    SECOND: "1-NN two-sample accuracy (pixels)",
    "swd": "sliced Wasserstein distance",
}


def ranking_text(scores: Scores, key: str, domain: str, methods, recipe: str, budget: int, n: int) -> str:
    """'A (1.2 ± 0.3) > B (2.0 ± 0.4) ≈ C (2.1 ± 0.5)': '>' a significant gap, '≈' a tie with the next."""
    parts = []
    for m, mean, ahead in ordered(scores, key, domain, methods, recipe, budget, n):
        parts.append(f"{method_title(m)} ({mean.text()})")
        parts.append(">" if ahead else "≈")
    return " ".join(parts[:-1])


def _has_second(scores: Scores) -> bool:
    return any(SECOND in r for r in scores.rows if r["domain"] == "digits")


def short_answer(scores: Scores, plan: StudyPlan) -> list[str]:
    """Which method to use at 1, 2 and 4 steps (with and without a teacher run) and how sure we are; where the
    best is tied, how many seeds would separate the first two."""
    methods, b = list(plan.methods), plan.steps
    own = [m for m in methods if not OBJECTIVES[m].teacher_run]
    lines = []
    for n in FEW:
        if not scores.has("digits", TEACHER, "own", b, n):
            continue
        best = leaders(scores, "fd_digits", "digits", methods, "own", b, n)
        best_own = leaders(scores, "fd_digits", "digits", own, "own", b, n, family=methods)
        checks = []
        if _has_second(scores):
            second = leaders(scores, SECOND, "digits", methods, "own", b, n)
            checks.append(f"{'also' if best[0] in second else 'not'} among the best under the second metric")
        if "checkerboard" in plan.domains:
            toy = leaders(scores, "swd", "checkerboard", methods, "own", plan.toy_steps, n)
            checks.append(f"{'also' if best[0] in toy else 'not'} among the best on the checkerboard")
        tied = f" (tied within seed noise with {', '.join(method_title(m) for m in best[1:])})" if len(best) > 1 else ""
        teacher = " (needs a flow-matching run first)" if OBJECTIVES[best[0]].teacher_run else ""
        sure = "sure" if len(best) == 1 and all(c.startswith("also") for c in checks) else "uncertain"
        lines.append(
            f"- **{steps_label(n)}: {method_title(best[0])}**{teacher}{tied}; without a teacher run: "
            f"**{method_title(best_own[0])}**"
            + (f" (or {', '.join(method_title(m) for m in best_own[1:])})" if len(best_own) > 1 else "")
            + f". {'; '.join(checks).capitalize()}{'.' if checks else ''} How sure: {sure}."
        )
    lines += [
        "",
        f"'Sure' means: no other method is within seed noise of it ({seeds_text(plan)}; Welch's t-test, "
        f"p < 0.05 after {HOLM_TEXT}) and it is also among the best under the second metric and on the "
        "checkerboard; otherwise the answer is written as uncertain.",
    ]
    return lines + separation_lines(scores, plan)


def short_answer_section(results: StudyResults, compared: ComparedWith | None) -> list[str]:
    """The short answer, then the field's order at scale, the agreement with the full study's answers (when
    given) and the two questions in one line each."""
    scores, plan = results.scores, results.plan
    return [
        *short_answer(scores, plan),
        *field_order_lines(scores, plan),
        *agreement_lines(scores, plan, compared),
        "",
        f"**The two questions**, at the largest budget ({plan.steps} training steps):",
        "",
        *question_answers(scores, plan, results.winner),
    ]


def separation_lines(scores: Scores, plan: StudyPlan) -> list[str]:
    """Where the best method at 1, 2 or 4 steps is tied, the seeds per method that would separate it from the
    runner-up at the observed means and spreads (power 0.8, Welch's t-test; :func:`seeds_to_separate`)."""
    lines = []
    for n in FEW:
        values = column(scores, "fd_digits", "digits", plan.methods, "own", plan.steps, n)
        best = leaders(scores, "fd_digits", "digits", plan.methods, "own", plan.steps, n)
        if len(best) < 2 or any(len(values[m]) < 2 for m in best[:2]):
            continue
        (a, va), (b, vb) = ((m, values[m]) for m in best[:2])
        pairs = len(values) * (len(values) - 1) // 2
        gap, spread = seed_mean(vb).mean - seed_mean(va).mean, (stdev(va), stdev(vb))
        holm_n, single_n = (seeds_to_separate(gap, *spread, alpha=level) for level in (ALPHA / pairs, ALPHA))
        lines.append(
            f"- {steps_label(n)}: {method_title(a)} ({seed_mean(va).text()}) and {method_title(b)} "
            f"({seed_mean(vb).text()}): {_seeds_text(holm_n)} under the correction over this step count's "
            f"{pairs} pairs (a p-value below 0.05 / {pairs}, enough whatever the other pairs show); "
            f"{_seeds_text(single_n)} for this one comparison alone at p < 0.05."
        )
    if not lines:
        return []
    head = (
        "How many seeds per method would separate the two best where they are tied, if their means and seed "
        "spreads stayed as observed (a power of 0.8 for Welch's t-test, from the noncentral t distribution):"
    )
    return ["", head, "", *lines]


def _seeds_text(n: int | None) -> str:
    return f"{n:,} seeds each" if n is not None else "no number of seeds up to 100,000"


def recipe_section(scores: Scores, plan: StudyPlan) -> list[str]:
    """FD of every method under its own and the common recipe (and MeanFlow's, for flow matching and
    shortcut), with whether the change is significant."""
    b = plan.steps
    extra = "meanflow" if any(r["recipe"] == "meanflow" for r in scores.rows) else None
    head = [
        "| method | recipe | 1 step | 4 steps | 128 steps | against own recipe at 1 / 4 / 128 steps |",
        "|---|---|---|---|---|---|",
    ]
    lines = head
    for m in plan.methods:
        for recipe in ("own", "common", *((extra,) if extra and m in MEANFLOW_RECIPE_METHODS else ())):
            if not scores.has("digits", m, recipe, b, 1):
                continue
            cells = [scores.mean("fd_digits", "digits", m, recipe, b, n).text() for n in (1, 4, 128)]
            if recipe == "own":
                verdict = ""
            else:
                verdict = " / ".join(
                    compare(
                        scores.values("fd_digits", "digits", m, recipe, b, n),
                        scores.values("fd_digits", "digits", m, "own", b, n),
                    )
                    for n in (1, 4, 128)
                )
            lines.append(f"| {method_title(m)} | {recipe} | " + " | ".join(cells) + f" | {verdict} |")
    return [
        "Recipes: "
        + "; ".join(f"**{k}**: {v}" for k, v in RECIPE_TEXT.items() if k in {r["recipe"] for r in scores.rows})
        + ".",
        "'better' / 'worse': the recipe changes FD beyond seed noise (Welch's t-test, p < 0.05); 'tie': it does not.",
        "",
        *lines,
    ]


def ablation_section(scores: Scores, plan: StudyPlan, winner: str) -> list[str]:
    b = plan.steps
    lines = [
        f"{method_title(winner)} (the best one-step method without a teacher) with one component changed at a time, "
        "the rest of its own recipe kept; FD at 1, 2, 4 and 128 steps, and whether the change is significant.",
        "",
        "| variant | 1 step | 2 steps | 4 steps | 128 steps |",
        "|---|---|---|---|---|",
    ]
    own = {n: scores.values("fd_digits", "digits", winner, "own", b, n) for n in (1, 2, 4, 128)}
    lines.append(
        "| own recipe | "
        + " | ".join(scores.mean("fd_digits", "digits", winner, "own", b, n).text() for n in own)
        + " |"
    )
    for component in ablations(winner):
        recipe = f"ablation:{component}"
        if not scores.has("digits", winner, recipe, b, 1):
            continue
        cells = []
        for n in own:
            verdict = compare(scores.values("fd_digits", "digits", winner, recipe, b, n), own[n])
            cells.append(f"{scores.mean('fd_digits', 'digits', winner, recipe, b, n).text()} ({verdict})")
        lines.append(f"| {component} | " + " | ".join(cells) + " |")
    return lines


def training_seconds(scores: Scores) -> float:
    """Training wall time summed over runs (a run scored at several budgets counts once, at its last)."""
    last: dict[tuple, float] = {}
    for r in scores.rows:
        run = (r["domain"], r["method"], r["recipe"], r["seed"], r.get("init", 0.0))
        if OBJECTIVES[r["method"]].schedule_spans_run:
            run = (*run, r["budget"])
        last[run] = max(last.get(run, 0.0), float(r["train_seconds"]))
    return sum(last.values())


def titled(title: str, lines: list[str]) -> list[str]:
    """A section: its heading, its lines, a blank line; nothing when it has no lines."""
    return ["## " + title, "", *lines, ""] if lines else []


def study_command(results: StudyResults, compared: ComparedWith | None) -> str:
    """The command that wrote the report (its options that decide the plan: --full, --max-steps, --methods,
    --device, --compare-with)."""
    plan = results.plan
    parts = [f"shortcut study --out {results.out}"]
    default = full_plan() if plan.ablation else StudyPlan()
    if plan.ablation:
        parts.append("--full")
    if plan.max_steps != default.max_steps:
        parts.append(f"--max-steps {plan.max_steps}")
    if plan.methods != default.methods:
        parts.append("--methods " + ("all" if plan.methods == registered_methods() else ",".join(plan.methods)))
    if plan.device != default.device:
        parts.append(f"--device {plan.device}")
    if compared is not None:
        parts.append(f"--compare-with {compared.path}")
    return " ".join(parts)


def study_header(results: StudyResults, compared: ComparedWith | None = None) -> list[str]:
    """Title, the command, the machine and the time it took."""
    machine, device = results.machine, results.plan.device
    return [
        "# Few-step generators on one network: which to use, and how sure we are",
        "",
        f"Generated by `{study_command(results, compared)}` on {'a CPU' if device == 'cpu' else device} "
        f"({machine['jobs']} run(s) at a time, {machine['threads']} thread(s)). Training time summed over runs: "
        f"{fmt_minutes(training_seconds(results.scores))}; cost timing {fmt_minutes(results.seconds['timing'])}; "
        f"this call took {fmt_minutes(results.seconds['this call'])} (stages already done are skipped on a rerun).",
        "",
    ]


def study_setup(results: StudyResults) -> list[str]:
    """Seeds and intervals, the digits runs and their scores, the checkerboard."""
    plan = results.plan
    lines = [
        f"- Seeds: {len(plan.seeds)} training seeds per (method, recipe){_leader_seeds_text(plan)}; scores are "
        "means with 95% Student-t "
        "intervals over seeds (mean ± t(0.975, n-1) s / sqrt(n)); a gap is significant when Welch's t-test over "
        "seeds gives p < 0.05, otherwise it is a tie. Rankings, leaders and the short answer compare every pair "
        "of methods at one step count (k methods: k (k - 1) / 2 tests), so their p-values are corrected for "
        "multiplicity with Holm's step-down method over those pairs (the smallest p-value times the number of "
        "pairs, the next times one fewer, and so on, each at least the one before); the comparisons of one "
        "method against itself under another recipe, ablation or fine-tuning are single tests, uncorrected. "
        "The sampling noise is the same for every run.",
        *digits_setup(results),
    ]
    if "checkerboard" in plan.domains:
        lines.append(
            f"- Checkerboard: the 2-D toy (an MLP), each method under its own recipe, {plan.toy_steps} training "
            f"steps, {plan.toy_num} samples per run and step count, sliced Wasserstein distance to as many fresh "
            "draws of the density (floor: two fresh draws against each other), and the share of samples on the board."
        )
    return lines


def _leader_seeds_text(plan: StudyPlan) -> str:
    """How many seeds the leaders get, where the plan gives them more."""
    if not set(plan.leader_seeds) - set(plan.seeds):
        return ""
    return (
        f", and {len(set(plan.leader_seeds) - set(plan.seeds))} more under their own recipe for the leaders at 1, "
        "2 and 4 steps at the largest budget and for flow matching and shortcut (trained after the budget stopped "
        "growing, through the same budgets)"
    )


def digits_setup(results: StudyResults) -> list[str]:
    """The digits data, network, training budget and scores (none without digits runs)."""
    plan, config = results.plan, results.config
    if config is None:
        return []
    second = ", and the 1-NN two-sample accuracy in pixel space (0.5: indistinguishable from the data)"
    distilled = ", ".join(method_title(m) for m in plan.methods if OBJECTIVES[m].teacher_run)
    return [
        "- Digits: scikit-learn digits, 8x8, train split (1,497 images), unconditional. Network: "
        f"{config.model} ({results.params / 1e6:.2f}M parameters), the same for every method. Training: "
        f"{plan.steps} steps at batch {config.batch_size}, {optimiser_text(config)}, EMA {config.ema_decay} with "
        "warm-up.",
        *(
            [
                f"- The distillation methods ({distilled}) start from the flow-matching run of the same seed and "
                f"recipe ({plan.steps} steps), so their total budget is twice the others'."
            ]
            if distilled
            else []
        ),
        f"- Digits scores: {plan.eval_num} samples per run and step count; Fréchet distance in the digits-CNN "
        "features against the train split (shipped weights), improved precision and recall "
        f"(k = {plan.pr_k}) in the same features{second if _has_second(results.scores) else ''}; data floor = "
        "test split against train split.",
    ]


def digits_tables(results: StudyResults) -> list[str]:
    """FD by step count under the own recipes (and its figure), then the second metric's table."""
    scores, plan, figure = results.scores, results.plan, results.figures.get("fd")
    methods = list(plan.methods)
    lines = titled(
        f"Digits: Fréchet distance, own recipes, {plan.steps} training steps",
        mean_table(scores, "fd_digits", "digits", methods, "own", plan.steps, plan.eval_steps),
    )
    if figure is not None:
        lines += [f"![FD against sampling steps]({figure.name})", ""]
    if _has_second(scores):
        table = mean_table(scores, SECOND, "digits", methods, "own", plan.steps, plan.eval_steps)
        lines += titled(f"Digits: the second metric ({METRIC_TEXT[SECOND]})", table)
    return lines


def rankings_section(scores: Scores, plan: StudyPlan) -> list[str]:
    """The methods ranked at 1, 2 and 4 steps by FD, the second metric and on the checkerboard."""
    methods, b = list(plan.methods), plan.steps
    lines = [
        "'>': a significant gap to the next method; '≈': a tie with it (Welch's t-test over seeds, p < 0.05 after "
        "Holm's correction over the pairs of methods in the ranking).",
        "",
    ]
    for n in FEW:
        lines.append(f"- {steps_label(n)}, FD: " + ranking_text(scores, "fd_digits", "digits", methods, "own", b, n))
        if _has_second(scores):
            lines.append("  - second metric: " + ranking_text(scores, SECOND, "digits", methods, "own", b, n))
        if "checkerboard" in plan.domains:
            toy = ranking_text(scores, "swd", "checkerboard", methods, "own", plan.toy_steps, n)
            lines.append("  - checkerboard: " + toy)
    return lines


def checkerboard_table(scores: Scores, plan: StudyPlan) -> list[str]:
    if "checkerboard" not in plan.domains:
        return []
    return mean_table(scores, "swd", "checkerboard", list(plan.methods), "own", plan.toy_steps, plan.eval_steps)


def write_study_report(results: StudyResults, compared: ComparedWith | None = None) -> Path:
    """OUT/report.md of the study: the short answer first (against ``compared``, another study's answers, when
    given), then every section the plan has scores for."""
    plan, scores, config = results.plan, results.scores, results.config
    ablation = ablation_section(scores, plan, results.winner) if results.winner and plan.ablation else []
    costs = cost_section(plan, results.costs, config.batch_size) if results.costs and config else []
    equal = equal_cost_section(scores, plan, results.costs) if results.costs else []
    questions = [*many_steps_question(scores, plan), *finetune_question(scores, plan, results.winner)]
    return write_report(
        results.out,
        [
            study_header(results, compared),
            titled("Short answer", short_answer_section(results, compared)),
            ["## Setup", *study_setup(results), ""],
            titled("Recipes", recipes_section(plan)),
            digits_tables(results),
            titled("Rankings", rankings_section(scores, plan)),
            titled("Method against recipe", recipe_section(scores, plan) if "common" in plan.recipes else []),
            titled("Checkerboard: sliced Wasserstein distance, own recipes", checkerboard_table(scores, plan)),
            titled("Budgets", budget_section(scores, plan, results.figures.get("budget")) if plan.budgets else []),
            titled(
                "Checkerboard budgets",
                checkerboard_budget_section(scores, plan, results.figures.get("toy_budget")),
            ),
            titled("Equal training cost", equal),
            titled("Ablation", ablation),
            titled("The two questions", questions),
            titled("Training cost per step", costs),
            grids_section(plan, results.figures.get("grids")),
            goals_section(results),
            reproduce_section(study_command(results, compared)),
        ],
    )
