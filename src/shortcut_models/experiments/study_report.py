"""The study's report: short answer first, then tables with 95% intervals over seeds, rankings that say
which gaps are significant, the recipe's share, the second metric and domain, budgets, ablation, the two
questions and the cost per step, as Markdown (OUT/report.md)."""

from __future__ import annotations

from pathlib import Path

from ..metrics.seed_intervals import compare
from ..objectives import OBJECTIVES
from ..outputs import write_text
from .report import fmt_minutes, optimiser_text
from .study_plan import MEANFLOW_RECIPE_METHODS, RECIPE_TEXT, TEACHER, StudyPlan, ablations, method_title
from .study_scores import Scores, leaders, ordered, reversals

FEW = (1, 2, 4)  # the budgets the study ranks
COST_TOLERANCE = 1.15  # a step may cost up to 15% more than its cost model predicts
SECOND = "nn1_accuracy"  # the second digits metric (1-NN two-sample accuracy; 0.5 = indistinguishable)
METRIC_TEXT = {
    "fd_digits": "FD (digits-CNN features)",
    SECOND: "1-NN two-sample accuracy (pixels)",
    "swd": "sliced Wasserstein distance",
}


def _steps_label(n: int) -> str:
    return f"{n} step{'s' if n > 1 else ''}"


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
    """Which method to use at 1, 2 and 4 steps (with and without a teacher run) and how sure we are."""
    methods, b = list(plan.methods), plan.steps
    own = [m for m in methods if not OBJECTIVES[m].teacher_run]
    lines = []
    for n in FEW:
        if not scores.has("digits", TEACHER, "own", b, n):
            continue
        best = leaders(scores, "fd_digits", "digits", methods, "own", b, n)
        best_own = leaders(scores, "fd_digits", "digits", own, "own", b, n)
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
            f"- **{_steps_label(n)}: {method_title(best[0])}**{teacher}{tied}; without a teacher run: "
            f"**{method_title(best_own[0])}**"
            + (f" (or {', '.join(method_title(m) for m in best_own[1:])})" if len(best_own) > 1 else "")
            + f". {'; '.join(checks).capitalize()}{'.' if checks else ''} How sure: {sure}."
        )
    lines += [
        "",
        f"'Sure' means: no other method is within seed noise of it ({len(plan.seeds)} seeds, Welch's t-test, "
        "p < 0.05) and it is also among the best under the second metric and on the checkerboard; otherwise "
        "the answer is written as uncertain.",
    ]
    return lines


def mean_table(scores: Scores, key: str, domain: str, methods, recipe: str, budget: int, steps) -> list[str]:
    """Mean ± 95% half-width over seeds per (method, step count); the best mean in bold."""
    steps = [n for n in steps if any(scores.has(domain, m, recipe, budget, n) for m in methods)]
    lines = ["| method | " + " | ".join(_steps_label(n) for n in steps) + " |", "|---|" + "---|" * len(steps)]
    have = [m for m in methods if scores.has(domain, m, recipe, budget, steps[0])]
    best = {n: min(scores.mean(key, domain, m, recipe, budget, n).mean for m in have) for n in steps}
    for m in have:
        cells = []
        for n in steps:
            s = scores.mean(key, domain, m, recipe, budget, n)
            cells.append(f"**{s.text()}**" if s.mean == best[n] else s.text())
        lines.append(f"| {method_title(m)} | " + " | ".join(cells) + " |")
    floor = scores.floor(key, domain)
    if floor is not None:
        lines.append("| data floor | " + " | ".join(f"{floor:.2f}" for _ in steps) + " |")
    return lines


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


def budget_section(scores: Scores, plan: StudyPlan, figure: Path | None) -> list[str]:
    """FD at 1 and 128 steps per budget, and whether the ranking at 1, 2 and 4 steps holds at the two largest."""
    budgets = plan.all_budgets()
    lines = [
        "| method | " + " | ".join(f"{b} steps: FD at 1 / 128" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for m in plan.methods:
        cells = []
        for b in budgets:
            if scores.has("digits", m, "own", b, 1):
                one, many = (scores.mean("fd_digits", "digits", m, "own", b, n).mean for n in (1, 128))
                cells.append(f"{one:.1f} / {many:.1f}")
            else:
                cells.append("")
        lines.append(f"| {method_title(m)} | " + " | ".join(cells) + " |")
    lines.append("")
    if figure is not None:
        lines += [f"![FD against budget]({figure.name})", ""]
    big, bigger = budgets[-2], budgets[-1]
    lines.append(
        f"The ranking at {big} and at {bigger} steps (the two largest budgets); a change counts when two methods "
        "swap places beyond seed noise (each significantly ahead at one budget, Welch's t-test over seeds, "
        "p < 0.05):"
    )
    lines.append("")
    for n in FEW:
        a = leaders(scores, "fd_digits", "digits", plan.methods, "own", big, n)
        c = leaders(scores, "fd_digits", "digits", plan.methods, "own", bigger, n)
        swapped = reversals(scores, "fd_digits", "digits", plan.methods, "own", (big, bigger), n)
        changes = (
            "; swapped: "
            + ", ".join(
                f"{method_title(x)} ahead of {method_title(y)} at {big}, behind at {bigger}" for x, y in swapped
            )
            if swapped
            else "; no two methods swap places"
        )
        lines.append(
            f"- {_steps_label(n)}: best at {big} steps {', '.join(method_title(m) for m in a)}; at {bigger} steps "
            f"{', '.join(method_title(m) for m in c)} (methods listed together are within seed noise){changes}."
        )
    return lines


def ranking_holds(scores: Scores, plan: StudyPlan) -> tuple[bool, str]:
    """Whether no two methods swap places beyond seed noise between the two largest budgets at 1, 2 and 4
    steps, with the swaps counted per step count."""
    big, bigger = plan.all_budgets()[-2:]
    counts = {n: len(reversals(scores, "fd_digits", "digits", plan.methods, "own", (big, bigger), n)) for n in FEW}
    text = f"{big} vs {bigger} steps: " + ", ".join(
        f"{_steps_label(n)} {c} swap{'s' if c != 1 else ''}" for n, c in counts.items()
    )
    return not any(counts.values()), text


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


def questions_section(scores: Scores, plan: StudyPlan, winner: str | None) -> list[str]:
    """The seed's two questions: does shortcut training help many-step sampling (same recipe), and can
    flow matching be fine-tuned into a few-step model."""
    b, lines = plan.steps, []
    if scores.has("digits", "shortcut", "common", b, 128) and scores.has("digits", "flow", "common", b, 128):
        s = scores.values("fd_digits", "digits", "shortcut", "common", b, 128)
        f = scores.values("fd_digits", "digits", "flow", "common", b, 128)
        verdict = {"better": "better than", "worse": "worse than", "tie": "tied with"}[compare(s, f)]
        lines.append(
            f"1. **Does shortcut training help many-step sampling?** Under the same (common) recipe, shortcut at "
            f"128 steps: FD {scores.mean('fd_digits', 'digits', 'shortcut', 'common', b, 128).text()}, flow matching "
            f"{scores.mean('fd_digits', 'digits', 'flow', 'common', b, 128).text()}: shortcut is **{verdict}** flow "
            "matching (Welch's t-test over seeds, p < 0.05)."
        )
    shares = sorted({float(r["init"]) for r in scores.rows if r.get("init")})
    if shares:
        lines += [
            "2. **Can flow matching be fine-tuned into a few-step model?** Each fine-tuning run starts from the "
            f"flow-matching run of its seed ({b} steps) and trains a share of the budget; FD at 1 step against the "
            "same method trained from scratch for the whole budget:",
            "",
            "| method | from scratch | " + " | ".join(f"fine-tuned {s:.0%}" for s in shares) + " |",
            "|---|---|" + "---|" * len(shares),
        ]
        for m in dict.fromkeys(("shortcut", winner)):
            if m is None or not scores.has("digits", m, "own", b, 1):
                continue
            scratch = scores.values("fd_digits", "digits", m, "own", b, 1)
            cells = []
            for share in shares:
                steps = max(1, round(b * share))
                tuned = scores.values("fd_digits", "digits", m, "own", steps, 1, init=share)
                if tuned:
                    cells.append(
                        f"{scores.mean('fd_digits', 'digits', m, 'own', steps, 1, init=share).text()} ({compare(tuned, scratch)})"
                    )
                else:
                    cells.append("")
            lines.append(
                f"| {method_title(m)} | {scores.mean('fd_digits', 'digits', m, 'own', b, 1).text()} | "
                + " | ".join(cells)
                + " |"
            )
        lines += ["", "('better' / 'worse' / 'tie': against from scratch, Welch's t-test over seeds.)"]
    return lines


def cost_section(plan: StudyPlan, costs: dict[str, dict[str, float]], batch: int) -> list[str]:
    lines = [
        f"Every method's training step against flow matching's on digits, same network and batch ({batch}), "
        f"steps alternated in one process ({plan.timing_repeats} each, median of per-round ratios). Cost model: "
        "forward and backward passes of the network per row (teacher passes included; a Jacobian-vector product "
        "counts as two forwards), a backward counted as two forwards, relative to flow matching's 1 + 1.",
        "",
        "| method | forward / backward passes per row | predicted | measured | measured / predicted | ms per step |",
        "|---|---|---|---|---|---|",
    ]
    for m in plan.methods:
        c = costs[m]
        lines.append(
            f"| {method_title(m)} | {c['forward']:.3g} / {c['backward']:.3g} | {c['model']:.3f} | {c['ratio']:.3f} | "
            f"{c['ratio'] / c['model']:.2f} | {c['ms']:.1f} |"
        )
    return lines


def goals(scores: Scores, plan: StudyPlan, costs: dict[str, dict[str, float]]) -> list[tuple[str, bool, str]]:
    """The issue's goals, each with whether it is met and the numbers behind it."""
    b, out = plan.steps, []
    flow_own = scores.mean("fd_digits", "digits", "flow", "own", b, 128)
    if scores.has("digits", "flow", "common", b, 128):
        flow_common = scores.mean("fd_digits", "digits", "flow", "common", b, 128)
        out.append(
            (
                "the recipe effect measured for flow matching at 128 steps",
                True,
                f"common recipe {flow_common.text()} vs own {flow_own.text()}",
            )
        )
    # the same recipe on both sides: the common one where flow matching ran under it
    recipe = "common" if scores.has("digits", "flow", "common", b, 128) else "own"
    candidates = [m for m in plan.methods if not OBJECTIVES[m].teacher_run and scores.has("digits", m, recipe, b, 1)]
    best = min(candidates, key=lambda m: scores.mean("fd_digits", "digits", m, recipe, b, 1).mean)
    ref = scores.mean("fd_digits", "digits", "flow", recipe, b, 128)
    one = scores.mean("fd_digits", "digits", best, recipe, b, 1)
    out.append(
        (
            "the best one-step model without a teacher within 2x of flow matching at 128 steps, both under the "
            f"{recipe} recipe",
            one.mean <= 2 * ref.mean,
            f"{method_title(best)} {one.text()} vs 2 x {ref.mean:.2f} = {2 * ref.mean:.2f}",
        )
    )
    if len(plan.all_budgets()) > 1:
        holds, text = ranking_holds(scores, plan)
        out.append(("the ranking at 1, 2 and 4 steps is the same at the two largest budgets", holds, text))
    if costs:
        over = {m: c["ratio"] / c["model"] for m, c in costs.items()}
        out.append(
            (
                f"every objective's step costs at most {COST_TOLERANCE:.2f}x its cost model",
                all(v <= COST_TOLERANCE for v in over.values()),
                ", ".join(f"{method_title(m)} {v:.2f}x" for m, v in over.items()),
            )
        )
    return out


def training_seconds(scores: Scores) -> float:
    """Training wall time summed over runs (a run scored at several budgets counts once, at its last)."""
    last: dict[tuple, float] = {}
    for r in scores.rows:
        run = (r["domain"], r["method"], r["recipe"], r["seed"], r.get("init", 0.0))
        if OBJECTIVES[r["method"]].schedule_spans_run:
            run = (*run, r["budget"])
        last[run] = max(last.get(run, 0.0), float(r["train_seconds"]))
    return sum(last.values())


def write_study_report(
    out: Path,
    plan: StudyPlan,
    scores: Scores,
    costs: dict[str, dict[str, float]],
    winner: str | None,
    seconds: dict[str, float],
    params: int,
    config,
    figures: dict[str, Path | None],
    machine: dict[str, int],
) -> Path:
    b, methods = plan.steps, list(plan.methods)
    train_seconds = training_seconds(scores)
    distilled = [m for m in methods if OBJECTIVES[m].teacher_run]
    lines = [
        "# Few-step generators on one network: which to use, and how sure we are",
        "",
        f"Generated by `shortcut study --out {out}{' --full' if plan.ablation else ''}` on a CPU "
        f"({machine['jobs']} run(s) at a time, {machine['threads']} thread(s)). Training time summed over runs: "
        f"{fmt_minutes(train_seconds)}; cost timing {fmt_minutes(seconds['timing'])}; this call took "
        f"{fmt_minutes(seconds['this call'])} (stages already done are skipped on a rerun).",
        "",
        "## Short answer",
        "",
        *short_answer(scores, plan),
        "",
        "## Setup",
        f"- Seeds: {len(plan.seeds)} training seeds per (method, recipe); scores are means with 95% Student-t "
        "intervals over seeds (mean ± t(0.975, n-1) s / sqrt(n)); a gap is significant when Welch's t-test over "
        "seeds gives p < 0.05, otherwise it is a tie. The sampling noise is the same for every run.",
    ]
    if config is not None:
        lines += [
            "- Digits: scikit-learn digits, 8x8, train split (1,497 images), unconditional. Network: "
            f"{config.model} ({params / 1e6:.2f}M parameters), the same for every method. Training: {b} steps at "
            f"batch {config.batch_size}, {optimiser_text(config)}, EMA {config.ema_decay} with warm-up.",
            f"- The distillation methods ({', '.join(method_title(m) for m in distilled)}) start from the flow-matching "
            f"run of the same seed and recipe ({b} steps), so their total budget is twice the others'.",
            f"- Digits scores: {plan.eval_num} samples per run and step count; Fréchet distance in the digits-CNN "
            "features against the train split (shipped weights), improved precision and recall "
            f"(k = {plan.pr_k}) in the same features"
            + (
                ", and the 1-NN two-sample accuracy in pixel space (0.5: indistinguishable from the data)"
                if _has_second(scores)
                else ""
            )
            + "; data floor = test split against train split.",
        ]
    if "checkerboard" in plan.domains:
        lines.append(
            f"- Checkerboard: the 2-D toy (an MLP), each method under its own recipe, {plan.toy_steps} training steps, {plan.toy_num} samples per run "
            "and step count, sliced Wasserstein distance to as many fresh draws of the density (floor: two fresh "
            "draws against each other), and the share of samples on the board."
        )
    lines += ["", f"## Digits: Fréchet distance, own recipes, {b} training steps", ""]
    lines += mean_table(scores, "fd_digits", "digits", methods, "own", b, plan.eval_steps)
    if figures.get("fd") is not None:
        lines += ["", f"![FD against sampling steps]({figures['fd'].name})"]
    if _has_second(scores):
        lines += ["", f"## Digits: the second metric ({METRIC_TEXT[SECOND]})", ""]
        lines += mean_table(scores, SECOND, "digits", methods, "own", b, plan.eval_steps)
    lines += ["", "## Rankings", "", "'>': a significant gap to the next method; '≈': a tie with it.", ""]
    for n in FEW:
        lines.append(f"- {_steps_label(n)}, FD: " + ranking_text(scores, "fd_digits", "digits", methods, "own", b, n))
        if _has_second(scores):
            lines.append("  - second metric: " + ranking_text(scores, SECOND, "digits", methods, "own", b, n))
        if "checkerboard" in plan.domains:
            lines.append(
                "  - checkerboard: " + ranking_text(scores, "swd", "checkerboard", methods, "own", plan.toy_steps, n)
            )
    if "common" in plan.recipes:
        lines += ["", "## Method against recipe", "", *recipe_section(scores, plan)]
    if "checkerboard" in plan.domains:
        lines += ["", "## Checkerboard: sliced Wasserstein distance, own recipes", ""]
        lines += mean_table(scores, "swd", "checkerboard", methods, "own", plan.toy_steps, plan.eval_steps)
    if plan.budgets:
        lines += ["", "## Budgets", "", *budget_section(scores, plan, figures.get("budget"))]
    if winner is not None and plan.ablation:
        lines += ["", "## Ablation", "", *ablation_section(scores, plan, winner)]
    lines += ["", "## The two questions", "", *questions_section(scores, plan, winner)]
    if costs and config is not None:
        lines += ["", "## Training cost per step", "", *cost_section(plan, costs, config.batch_size)]
    if figures.get("grids") is not None:
        lines += [
            "",
            "## Samples from the same noise",
            "",
            "One row per method (first seed, own recipe), columns "
            + ", ".join(str(n) for n in plan.grid_steps)
            + " steps.",
            "",
            f"![grids]({figures['grids'].name})",
        ]
    lines += ["", "## Goals", ""]
    for text, met, numbers in goals(scores, plan, costs):
        lines.append(f"- [{'x' if met else ' '}] {text}: {numbers}")
    lines += [
        "",
        "## Reproduce",
        "",
        f"```bash\nshortcut study --out {out}{' --full' if plan.ablation else ''}\n```",
        "",
    ]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path
