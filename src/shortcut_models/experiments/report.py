"""Report sections the demo's and the study's Markdown reports share: the score tables, the two questions,
the cost per step, the samples, the goals; each a function returning its lines."""

from __future__ import annotations

from pathlib import Path

from ..metrics.seed_intervals import compare, seed_mean
from ..outputs import write_text
from .goals import goals
from .study_plan import TEACHER, StudyPlan, finetune_targets, method_title
from .study_scores import Scores, StudyResults

TOLERANCE = 0.05  # with one seed, a relative gap up to 5% is a tie
FINETUNE_STEPS = (1, 2, 4, 128)  # the step counts of the fine-tuning table
OPTIMIZER_NAMES = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}


def optimiser_text(config) -> str:
    """How a run was optimised, for a report: "AdamW lr 0.001 (warm-up 200)", with its schedule when it decays."""
    name = OPTIMIZER_NAMES.get(config.optimizer, config.optimizer)
    schedule = "" if config.lr_schedule == "constant" else f", {config.lr_schedule} to {config.lr_min:g}"
    return f"{name} lr {config.lr:g}{schedule} (warm-up {config.warmup_steps})"


def fmt_minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def steps_label(n: int) -> str:
    return f"{n} step{'s' if n > 1 else ''}"


def verdict(a: list[float], b: list[float]) -> tuple[str, str]:
    """'better', 'worse' or 'tie' of ``a`` against ``b`` (lower is better) and the rule used: Welch's t-test
    over seeds (p < 0.05), or with one seed a side, a relative gap of more than 5% of ``b``."""
    if len(a) > 1 and len(b) > 1:
        return compare(a, b), rule(2)
    x, y = seed_mean(a).mean, seed_mean(b).mean
    return ("tie" if abs(x - y) <= TOLERANCE * y else ("better" if x < y else "worse")), rule(1)


def rule(seeds: int) -> str:
    """How :func:`verdict` decides with ``seeds`` seeds a side."""
    return "Welch's t-test over seeds, p < 0.05" if seeds > 1 else "one seed: a tie means within 5%"


def mean_table(scores: Scores, key: str, domain: str, methods, recipe: str, budget: int, steps) -> list[str]:
    """Mean ± 95% half-width over seeds per (method, step count); the best mean in bold."""
    steps = [n for n in steps if any(scores.has(domain, m, recipe, budget, n) for m in methods)]
    lines = ["| method | " + " | ".join(steps_label(n) for n in steps) + " |", "|---|" + "---|" * len(steps)]
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


def many_steps_question(scores: Scores, plan: StudyPlan) -> list[str]:
    """Does shortcut training help many-step sampling: shortcut against flow matching at 128 steps under
    one recipe (the common one where both ran under it)."""
    b, recipe = plan.steps, many_steps_recipe(scores, plan)
    if recipe is None:
        return []
    s = scores.values("fd_digits", "digits", "shortcut", recipe, b, 128)
    f = scores.values("fd_digits", "digits", TEACHER, recipe, b, 128)
    word, how = verdict(s, f)
    gap = (seed_mean(s).mean / seed_mean(f).mean - 1) * 100
    return [
        f"1. **Does shortcut training help many-step sampling?** Under the same ({recipe}) recipe, shortcut at "
        f"128 steps: FD {seed_mean(s).text()}, flow matching {seed_mean(f).text()} ({gap:+.1f}%): shortcut is "
        f"**{ {'better': 'better than', 'worse': 'worse than', 'tie': 'tied with'}[word] }** flow matching ({how})."
    ]


def many_steps_recipe(scores: Scores, plan: StudyPlan) -> str | None:
    """The recipe the many-step question compares shortcut and flow matching under at the largest budget: the
    common one where both ran under it, else the main one (their own in the study); None when either has no
    score at 128 steps."""
    for recipe in ("common", plan.main_recipe):
        if all(scores.has("digits", m, recipe, plan.steps, 128) for m in ("shortcut", TEACHER)):
            return recipe
    return None


def finetune_question(scores: Scores, plan: StudyPlan, winner: str | None) -> list[str]:
    """Can flow matching be fine-tuned into a few-step model: per fine-tuned method, FD of the flow-matching
    start, each fine-tuning share and training from scratch, with each share's verdict against scratch."""
    shares = sorted({float(r["init"]) for r in scores.rows if r.get("init")})
    recipe = plan.main_recipe
    methods = [m for m in finetune_targets(plan, winner) if scores.has("digits", m, recipe, plan.steps, 1)]
    if not shares or not methods:
        return []
    steps = [n for n in FINETUNE_STEPS if scores.has("digits", methods[0], recipe, plan.steps, n)]
    lines = [
        "2. **Can flow matching be fine-tuned into a few-step model?** Each fine-tuning run starts from the "
        f"flow-matching run of its seed ({plan.steps} steps: online and EMA weights, a fresh optimiser) and trains "
        "a share of that budget; FD from the same noise as the main table, each fine-tuned model against the "
        "same method trained from scratch for the whole budget:",
        "",
        "| model | " + " | ".join(steps_label(n) for n in steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    lines.append(f"| flow matching (the start) | {_fd_cells(scores, plan, steps, TEACHER, plan.steps, 0.0)} |")
    for m in methods:
        lines += _finetune_rows(scores, plan, m, shares, steps)
    cheapest = _cheapest_match(scores, plan, methods, shares)
    return [*lines, "", *cheapest, "", f"(Verdicts against from scratch: {rule(len(plan.seeds))}.)"]


def _finetune_rows(scores: Scores, plan: StudyPlan, m: str, shares: list[float], steps: list[int]) -> list[str]:
    """Rows of :func:`finetune_question` for method ``m``: each share (with its verdicts), then from scratch."""
    lines = []
    for share in shares:
        budget = max(1, round(plan.steps * share))
        cells = _fd_cells(scores, plan, steps, m, budget, share, against=m)
        lines.append(f"| {method_title(m)} fine-tuned {share:.0%} ({steps_label(budget)}) | {cells} |")
    scratch = _fd_cells(scores, plan, steps, m, plan.steps, 0.0)
    return [*lines, f"| {method_title(m)} from scratch ({steps_label(plan.steps)}) | {scratch} |"]


def _fd_cells(
    scores: Scores, plan: StudyPlan, steps: list[int], m: str, budget: int, init: float, against: str | None = None
) -> str:
    """FD of ``m`` at ``budget`` (``init``: its fine-tuning share) per step count, each with its verdict
    against ``against`` trained from scratch when given."""
    cells, recipe = [], plan.main_recipe
    for n in steps:
        values = scores.values("fd_digits", "digits", m, recipe, budget, n, init=init)
        scratch = scores.values("fd_digits", "digits", against, recipe, plan.steps, n) if against else []
        tail = f" ({verdict(values, scratch)[0]})" if values and scratch else ""
        cells.append(f"{seed_mean(values).text()}{tail}" if values else "")
    return " | ".join(cells)


def _cheapest_match(scores: Scores, plan: StudyPlan, methods: list[str], shares: list[float]) -> list[str]:
    """Per method, the smallest fine-tuning share whose FD at 1 step matches training from scratch, by the
    rule of the short answer's line (:func:`_smallest_match`)."""
    lines = []
    for m in methods:
        found = _smallest_match(scores, plan, m, shares)
        if found is None:
            continue
        share, word = found
        lines.append(
            f"- {method_title(m)}: fine-tuning matches training from scratch at 1 step (a tie or better) with "
            f"{share:.0%} of the budget (on top of the flow-matching run)."
            if word != "worse"
            else f"- {method_title(m)}: no fine-tuning share tried here matches training from scratch at 1 step "
            "(each is worse)."
        )
    return lines


MANY_STEPS = "Does shortcut training help many-step sampling?"
FINETUNE = "Can a flow model be fine-tuned into a few-step one?"


def question_answers(scores: Scores, plan: StudyPlan, winner: str | None) -> list[str]:
    """The two questions answered in one line each at the largest budget, FD with 95% intervals over seeds."""
    return [
        f"- {MANY_STEPS} {many_steps_answer(scores, plan)}",
        f"- {FINETUNE} {finetune_answer(scores, plan, winner)}",
    ]


def many_steps_answer(scores: Scores, plan: StudyPlan) -> str:
    """'Yes' / 'No: tied' / 'No: it is worse': shortcut against flow matching at 128 steps, FD over seeds."""
    recipe = many_steps_recipe(scores, plan)
    if recipe is None:
        return "Not asked here (it needs shortcut and flow matching scored at 128 steps)."
    s, f = (scores.values("fd_digits", "digits", m, recipe, plan.steps, 128) for m in ("shortcut", TEACHER))
    word, how = verdict(s, f)
    answer = {"better": "Yes", "tie": "No: tied", "worse": "No: it is worse"}[word]
    return (
        f"**{answer}**: at 128 sampling steps, both under the {recipe} recipe for {plan.steps} training steps, "
        f"shortcut FD {seed_mean(s).text()} against flow matching {seed_mean(f).text()} (verdict: {how})."
    )


def finetune_answer(scores: Scores, plan: StudyPlan, winner: str | None) -> str:
    """'Yes' when some fine-tuning share of some target matches (is not worse than) training it from scratch
    at 1 step, with the smallest such share per target; 'Not asked here' without fine-tuning runs."""
    shares = sorted({float(r["init"]) for r in scores.rows if r.get("init")})
    methods = [m for m in finetune_targets(plan, winner) if scores.has("digits", m, plan.main_recipe, plan.steps, 1)]
    parts = [part for m in methods if (part := _finetune_match(scores, plan, m, shares))]
    if not parts:
        return "Not asked here (`shortcut study --full` asks it)."
    answer = "Yes" if any(matched for _, matched in parts) else "No"
    return (
        f"**{answer}**, at 1 step, fine-tuned from the {plan.steps}-step flow-matching run for a share of that "
        f"budget against the same method trained from scratch for {plan.steps} steps: "
        + "; ".join(text for text, _ in parts)
        + f" (verdicts: {rule(len(plan.seeds))})."
    )


def _finetune_match(scores: Scores, plan: StudyPlan, m: str, shares: list[float]) -> tuple[str, bool] | None:
    """The smallest share whose FD at 1 step is not worse than from scratch (else the largest tried), as
    text, and whether it matches; None when ``m`` has no fine-tuning score."""
    found = _smallest_match(scores, plan, m, shares)
    if found is None:
        return None
    share, word = found
    scratch = scores.values("fd_digits", "digits", m, plan.main_recipe, plan.steps, 1)
    how = f"matches it with {share:.0%} of the budget" if word != "worse" else f"does not, even with {share:.0%}"
    numbers = f"FD {seed_mean(_tuned(scores, plan, m, share)).text()} against {seed_mean(scratch).text()}: {word}"
    return f"{method_title(m)} {how} ({numbers})", word != "worse"


def _smallest_match(scores: Scores, plan: StudyPlan, m: str, shares: list[float]) -> tuple[float, str] | None:
    """The smallest fine-tuning share of ``m`` whose FD at 1 step is not worse than ``m`` trained from scratch
    (:func:`verdict`: a tie or better), with its verdict; else the largest share tried, 'worse'; None when
    ``m`` has no fine-tuning score."""
    scratch = scores.values("fd_digits", "digits", m, plan.main_recipe, plan.steps, 1)
    tuned = {s: values for s in shares if (values := _tuned(scores, plan, m, s))}
    if not tuned:
        return None
    words = {s: verdict(values, scratch)[0] for s, values in tuned.items()}
    share = next((s for s in words if words[s] != "worse"), list(words)[-1])
    return share, words[share]


def _tuned(scores: Scores, plan: StudyPlan, m: str, share: float) -> list[float]:
    """FD at 1 step over seeds of ``m`` fine-tuned from flow matching for ``share`` of the budget."""
    return scores.values("fd_digits", "digits", m, plan.main_recipe, max(1, round(plan.steps * share)), 1, init=share)


def cost_section(plan: StudyPlan, costs: dict[str, dict[str, float]], batch: int) -> list[str]:
    """Each method's measured step time against flow matching's, next to its cost model."""
    lines = [
        f"Every method's training step against flow matching's on digits, same network and batch ({batch}), "
        f"steps alternated in one process ({plan.timing_repeats} each, median of per-round ratios). Cost model: "
        "forward and backward passes of the network per row (teacher passes included; a Jacobian-vector product "
        "counts as two forwards), a backward counted as two forwards, relative to flow matching's 1 + 1. On a "
        "CPU, small networks cost mostly per-operation overhead, so passes on few rows cost more than their share "
        "(see benchmarks/RESULTS.md).",
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


def grids_section(plan: StudyPlan, figure: Path | None) -> list[str]:
    """The sample grids: one row per method, from the same noise."""
    if figure is None:
        return []
    columns = ", ".join(str(n) for n in plan.grid_steps)
    return [
        "## Samples from the same noise",
        "",
        f"One row per method (first seed, {plan.main_recipe} recipe), columns {columns} steps.",
        "",
        f"![grids]({figure.name})",
        "",
    ]


def goals_section(results: StudyResults) -> list[str]:
    """Every goal checked, ticked when met, with its numbers."""
    lines = ["## Goals", ""]
    for text, met, numbers in goals(results.scores, results.plan, results.costs):
        lines.append(f"- [{'x' if met else ' '}] {text}: {numbers}")
    return [*lines, ""]


def reproduce_section(command: str) -> list[str]:
    return ["## Reproduce", "", f"```bash\n{command}\n```", ""]


def write_report(out: Path, sections: list[list[str]]) -> Path:
    """OUT/report.md from its sections, in order; returns its path."""
    path = out / "report.md"
    write_text(path, "\n".join(line for section in sections for line in section))
    return path
