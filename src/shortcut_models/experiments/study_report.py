"""The study's report: tables, figures, rankings and plain advice, as Markdown (OUT/report.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..objectives import OBJECTIVES
from ..objectives.schedule import num_levels
from ..outputs import write_text
from .report import fd_by_steps, fmt_minutes, optimiser_text

NAMES = {name: cls.title for name, cls in OBJECTIVES.items()}
FEW = (1, 2, 4)  # the budgets the study ranks
COST_TOLERANCE = 1.15  # a step may cost up to 15% more than its cost model predicts

# How each method's teacher and sampler are set (the report's setup section).
RECIPES = {
    "flow": "plain flow matching (t on the 1/128 grid), sampled with its step-size input held at 1/128",
    "shortcut": "flow matching plus one self-consistency row in 8 (two half steps of the network itself)",
    "consistency-training": "the authors' curriculum: d = 1 for the first 1/7 of the run, halved every 1/7",
    "consistency-distillation": "from the flow-matching run (frozen teacher, one Euler step of 1/128), "
    "sampled with d held at 1/128",
    "progressive-distillation": "from the flow-matching run, 7 stages of 2 -> 1 step distillation in one run "
    "(the teacher takes the student's weights at each stage)",
    "live-reflow": "flow matching plus one reflow row in 8 (8 Euler steps of the network itself), "
    "sampled with d = 1 (d = 1/128 at 128 steps)",
    "meanflow": "average velocity over [t, t + d]; 25% of rows with d > 0 (logit-normal times), adaptive loss weight",
    "esc": "MeanFlow's identity with the plug-in velocity on half the rows and intervals ending at the data "
    "early in training (terminal-time schedule over the first 10% of the run)",
    "imf": "improved MeanFlow: half the rows with d = 0, the network's own velocity in the product "
    "(guidance as a network input, at 1 here: the data are unconditional)",
    "imm": "inductive moment matching: a kernel distance between groups of 4 particles, time-weighted",
    "sct": "continuous-time consistency: 25% of rows jump to the data with the derivative term warmed up "
    "over the first 10% of the run, the rest flow matching",
}


def _pr_by_steps(rows: list[dict[str, Any]]) -> dict[str, dict[int, tuple[float, float]]]:
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for r in rows:
        out.setdefault(r["objective"], {})[int(r["steps"])] = (float(r["precision"]), float(r["recall"]))
    return out


def ranking(fd: dict[str, dict[int, float]], steps: int) -> list[str]:
    """Methods ordered by FD at ``steps`` (best first)."""
    return sorted(fd, key=lambda m: fd[m][steps])


def goals(fd: dict[str, dict[int, float]], costs: dict[str, dict[str, float]]) -> list[tuple[str, bool, str]]:
    """The issue's goals, each with whether it is met and the numbers behind it."""
    best = ranking(fd, 1)[0]
    flow128 = fd["flow"][128]
    out = [
        (
            "the best one-step model within 2x of flow matching at 128 steps",
            fd[best][1] <= 2 * flow128,
            f"{NAMES[best]} {fd[best][1]:.2f} vs 2 x {flow128:.2f} = {2 * flow128:.2f}",
        )
    ]
    for m in ("meanflow", "shortcut"):
        if m in fd:
            out.append(
                (
                    f"{NAMES[m]} beats flow matching at 1, 2 and 4 steps",
                    all(fd[m][n] < fd["flow"][n] for n in FEW),
                    ", ".join(f"{n}: {fd[m][n]:.2f} vs {fd['flow'][n]:.2f}" for n in FEW),
                )
            )
    over = {m: c["ratio"] / c["model"] for m, c in costs.items()}
    out.append(
        (
            f"every objective's step costs at most {COST_TOLERANCE:.2f}x its cost model",
            all(v <= COST_TOLERANCE for v in over.values()),
            ", ".join(f"{NAMES[m]} {v:.2f}x" for m, v in over.items()),
        )
    )
    return out


def head_to_head(fd, pr, batch: int) -> list[str]:
    """Which of MeanFlow and shortcut wins at each budget, with the evidence and the likely reasons."""
    if "meanflow" not in fd or "shortcut" not in fd:
        return []
    shortcut, meanflow = OBJECTIVES["shortcut"](), OBJECTIVES["meanflow"]()
    lines = []
    for n in (*FEW, 8, 128):
        if n not in fd["meanflow"]:
            continue
        m, s = fd["meanflow"][n], fd["shortcut"][n]
        winner = "MeanFlow" if m < s else "shortcut"
        (pm, rm), (ps, rs) = pr["meanflow"][n], pr["shortcut"][n]
        lines.append(
            f"- {n} step{'s' if n > 1 else ''}: **{winner}** (FD {m:.2f} vs {s:.2f}; precision {pm:.2f} vs {ps:.2f}, "
            f"recall {rm:.2f} vs {rs:.2f})"
        )
    top = max(fd["flow"])
    counts = [n for n in fd["meanflow"] if n in fd["shortcut"]]
    higher = sum(pr["meanflow"][n][0] > pr["shortcut"][n][0] for n in counts)
    recall_gap = max(abs(pr["meanflow"][n][1] - pr["shortcut"][n][1]) for n in counts)
    lines += [
        "",
        f"Evidence: at {top} steps MeanFlow reaches FD {fd['meanflow'][top]:.2f} against {fd['flow'][top]:.2f} for "
        f"flow matching and {fd['shortcut'][top]:.2f} for shortcut, so much of its lead is a better velocity field "
        f"itself, not only better jumps; its precision is the higher one at {higher} of {len(counts)} step counts "
        f"(failed samples: 1 - precision), recall differs by at most {recall_gap:.2f}. Likely reasons (not isolated by an ablation here): its rows with "
        "d = 0 are flow matching with logit-normal times (more rows mid-path) under the adaptive loss weight; "
        f"per batch of {batch} rows it trains {meanflow.kind_rows(batch)[0]} rows on intervals of any length "
        "with an exact target from the network's own derivative, while shortcut trains "
        f"{shortcut.kind_rows(batch)[0]} rows spread over {num_levels(shortcut.max_steps)} step sizes, each target built "
        "from two half steps of the network, so errors at small steps feed the large ones. "
        "Shortcut's advantage is cost per step (see the cost table).",
    ]
    return lines


def write_study_report(
    out: Path,
    plan,
    rows: list[dict[str, Any]],
    pr_floor: tuple[float, float],
    costs: dict[str, dict[str, float]],
    train_seconds: dict[str, float],
    seconds: dict[str, float],
    params: int,
    config,
    figures: dict[str, Path],
    threads: int,
) -> Path:
    fd, pr = fd_by_steps(rows), _pr_by_steps(rows)
    methods = [m for m in plan.methods if m in fd]
    steps = sorted({int(r["steps"]) for r in rows})
    floor = next(float(r["fd_digits_floor"]) for r in rows)
    distilled = [m for m in methods if OBJECTIVES[m].teacher_run]
    lines = [
        "# Few-step generators on one network: flow matching, shortcut, the paper's baselines and MeanFlow",
        "",
        f"Generated by `shortcut study --out {out}` on a CPU ({threads} thread{'s' if threads > 1 else ''} per process). "
        f"Time of its stages, summed over the calls that ran them: training {fmt_minutes(seconds['training'])}, "
        f"evaluation {fmt_minutes(seconds['evaluation'])}, cost timing {fmt_minutes(seconds['timing'])}; "
        f"total {fmt_minutes(seconds['training'] + seconds['evaluation'] + seconds['timing'])} "
        f"(the last call took {fmt_minutes(seconds['this call'])}: stages already done are skipped on a rerun).",
        "",
        "## Setup",
        "- Data: scikit-learn digits, 8x8, train split (1,497 images), unconditional (null label everywhere).",
        f"- Network: {config.model} ({params / 1e6:.2f}M parameters), the same for every method.",
        f"- Training: {config.steps} steps at batch {config.batch_size} for every method, {optimiser_text(config)}, "
        f"EMA {config.ema_decay} with warm-up; teachers inside a run are the "
        "online network (the preset's setting for short budgets).",
        f"- The distillation methods ({', '.join(NAMES[m] for m in distilled)}) start from the flow-matching run: "
        f"their total budget is {config.steps} flow-matching steps plus {config.steps} of their own.",
        "- Training wall time: "
        + ", ".join(f"{NAMES[k]} {fmt_minutes(v)}" for k, v in train_seconds.items() if k in NAMES)
        + " (the flow-matching run is also the distillation teacher; times add over resumed calls).",
        f"- Evaluation: {plan.eval_num} samples per method and step count, from the same noise for every method; "
        "Fréchet distance in the features of the digits CNN (`fd-digits`) against the train split; "
        f"improved precision and recall (k = {plan.pr_k} nearest neighbours) in the same features; "
        "data floor = test split (300 images) vs train split.",
        "",
        "Methods:",
        *[f"- {NAMES[m]}: {RECIPES.get(m, '')}" for m in methods],
        "",
        "## Fréchet distance by number of sampling steps",
        "",
        "| method | " + " | ".join(f"{n} step{'s' if n > 1 else ''}" for n in steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for m in methods:
        best = {n: min(fd[x][n] for x in methods) for n in steps}
        cells = [f"**{fd[m][n]:.2f}**" if fd[m][n] == best[n] else f"{fd[m][n]:.2f}" for n in steps]
        lines.append(f"| {NAMES[m]} | " + " | ".join(cells) + " |")
    lines += [
        "| data floor | " + " | ".join(f"{floor:.2f}" for _ in steps) + " |",
        "",
        f"![FD against sampling steps]({figures['fd'].name})",
        "",
        "## Precision and recall",
        "",
        "Precision: the share of samples that fall on the data's manifold; 1 - precision is the share of failed "
        "samples (the ones an eye calls malformed). Recall: the share of real images the samples cover.",
        "",
        "| method | " + " | ".join(f"{n} step{'s' if n > 1 else ''}: P / R" for n in steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for m in methods:
        lines.append(f"| {NAMES[m]} | " + " | ".join(f"{pr[m][n][0]:.2f} / {pr[m][n][1]:.2f}" for n in steps) + " |")
    lines += [
        "| data floor | " + " | ".join(f"{pr_floor[0]:.2f} / {pr_floor[1]:.2f}" for _ in steps) + " |",
        "",
        "Failed samples at 1 step (1 - precision): "
        + ", ".join(f"{NAMES[m]} {100 * (1 - pr[m][1][0]):.0f}%" for m in methods)
        + f" (test images: {100 * (1 - pr_floor[0]):.0f}%).",
        "",
        "## Ranking and advice",
        "",
    ]
    for n in FEW:
        order = ranking({m: fd[m] for m in methods}, n)
        lines.append(f"- {n} step{'s' if n > 1 else ''}: " + " > ".join(f"{NAMES[m]} ({fd[m][n]:.2f})" for m in order))
    lines += [
        "",
        *advice(fd, methods, steps),
        "",
        "## MeanFlow against shortcut",
        "",
        *head_to_head(fd, pr, config.batch_size),
    ]
    lines += [
        "",
        "## Training cost per step",
        "",
        f"Every method's training step against flow matching's, same network and batch ({config.batch_size}), "
        f"steps alternated in one process ({plan.timing_repeats} each, median of per-round ratios). Cost model: "
        "forward and backward passes of the network per row (teacher passes included; a Jacobian-vector product "
        "counts as two forwards), a backward counted as two forwards, relative to flow matching's 1 + 1.",
        "",
        "| method | forward / backward passes per row | predicted | measured | measured / predicted | ms per step |",
        "|---|---|---|---|---|---|",
    ]
    for m in methods:
        c = costs[m]
        lines.append(
            f"| {NAMES[m]} | {c['forward']:.3g} / {c['backward']:.3g} | {c['model']:.3f} | {c['ratio']:.3f} | "
            f"{c['ratio'] / c['model']:.2f} | {c['ms']:.1f} |"
        )
    lines += [
        "",
        "## Samples from the same noise",
        "",
        "One row per method (in the order of the tables), columns 1, 2 and 4 steps.",
        "",
        f"![grids]({figures['grids'].name})",
        "",
        "## Goals",
        "",
    ]
    for text, met, numbers in goals({m: fd[m] for m in methods}, {m: costs[m] for m in methods}):
        lines.append(f"- [{'x' if met else ' '}] {text}: {numbers}")
    lines += ["", "## Reproduce", "", f"```bash\nshortcut study --out {out}\n```", ""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path


def advice(fd: dict[str, dict[int, float]], methods: list[str], steps: list[int]) -> list[str]:
    """Plain words: the method to use at each budget, by FD (ties within 5% named together)."""
    lines = []
    for n in steps:
        order = ranking({m: fd[m] for m in methods}, n)
        best = fd[order[0]][n]
        close = [m for m in order[1:] if fd[m][n] <= 1.05 * best]
        also = f" ({', '.join(NAMES[m] for m in close)} within 5%)" if close else ""
        teacher = " (needs a trained flow-matching run first)" if OBJECTIVES[order[0]].teacher_run else ""
        lines.append(f"- With {n} step{'s' if n > 1 else ''}: use **{NAMES[order[0]]}**{teacher}{also}.")
    own = [m for m in methods if not OBJECTIVES[m].teacher_run]
    best_own = ranking({m: fd[m] for m in own}, 1)[0]
    lines.append(
        f"- Without a teacher run, the best one-step model is **{NAMES[best_own]}** (FD {fd[best_own][1]:.2f})."
    )
    return lines
