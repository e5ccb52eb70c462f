"""The demo's report: tables, figures and plain answers, as Markdown (OUT/report.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..objectives import OBJECTIVES, Shortcut
from ..outputs import write_text

NAMES = {name: cls.title for name, cls in OBJECTIVES.items()}


def fd_by_steps(rows: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """{objective: {steps: fd}} from evaluation rows."""
    out: dict[str, dict[int, float]] = {}
    for r in rows:
        out.setdefault(r["objective"], {})[int(r["steps"])] = float(r["fd_digits"])
    return out


def compare_at(fd: dict[str, dict[int, float]], steps: int, tolerance: float = 0.05) -> str:
    """'better', 'equal' (within tolerance, relative) or 'worse': shortcut against flow matching."""
    s, f = fd["shortcut"][steps], fd["flow"][steps]
    if abs(s - f) <= tolerance * f:
        return "equal"
    return "better" if s < f else "worse"


def goals(fd: dict[str, dict[int, float]]) -> list[tuple[str, bool, str]]:
    """The study's quality goals, each with whether it is met and the numbers behind it."""
    s, f = fd["shortcut"], fd["flow"]
    out = [
        (
            "shortcut at 1 step within 2x of flow matching at 128 steps",
            s[1] <= 2 * f[128],
            f"{s[1]:.2f} vs 2 x {f[128]:.2f} = {2 * f[128]:.2f}",
        )
    ]
    few = [n for n in (1, 2, 4) if n in s and n in f]
    out.append(
        (
            "shortcut better than flow matching at 1, 2 and 4 steps",
            all(s[n] < f[n] for n in few),
            ", ".join(f"{n}: {s[n]:.2f} vs {f[n]:.2f}" for n in few),
        )
    )
    out.append(
        (
            "shortcut at 128 steps within 1.25x of flow matching at 128 steps",
            s[128] <= 1.25 * f[128],
            f"{s[128]:.2f} vs 1.25 x {f[128]:.2f} = {1.25 * f[128]:.2f}",
        )
    )
    return out


OPTIMIZER_NAMES = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}


def optimiser_text(config) -> str:
    """How a run was optimised, for a report: "AdamW lr 0.001 (warm-up 200)", with its schedule when it decays."""
    name = OPTIMIZER_NAMES.get(config.optimizer, config.optimizer)
    schedule = "" if config.lr_schedule == "constant" else f", {config.lr_schedule} to {config.lr_min:g}"
    return f"{name} lr {config.lr:g}{schedule} (warm-up {config.warmup_steps})"


def fmt_minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _share(train_seconds: dict[str, float]) -> str:
    """'X min (Y%)': the evaluations' part of the training time (key "evaluating")."""
    total = sum(v for k, v in train_seconds.items() if k in NAMES)
    evaluating = train_seconds.get("evaluating", 0.0)
    return f"{fmt_minutes(evaluating)} ({100 * evaluating / total if total else 0:.1f}%)"


def finetune_lines(rows: list[dict[str, Any]], scratch_steps: int) -> list[str]:
    """The fine-tuning comparison: a table and a plain statement of which is better at what cost."""
    steps = sorted({int(r["steps"]) for r in rows})
    groups: dict[tuple[str, float], dict[int, float]] = {}
    for r in rows:
        groups.setdefault((r["objective"], float(r["budget_fraction"])), {})[int(r["steps"])] = float(r["fd_digits"])
    order = sorted(groups, key=lambda k: (k[0] != "flow", k[0] == "shortcut", k[1]))

    def name(key):
        obj, frac = key
        if obj == "flow":
            return "flow matching (the starting point)"
        if obj == "shortcut":
            return f"shortcut from scratch ({scratch_steps} steps)"
        return f"flow matching + {round(frac * scratch_steps)} shortcut steps ({frac:.0%} of scratch)"

    lines = [
        "| model | extra shortcut steps | " + " | ".join(f"{n} step{'s' if n > 1 else ''}" for n in steps) + " |",
        "|---|---|" + "---|" * len(steps),
    ]
    for key in order:
        extra = 0 if key[0] == "flow" else round(key[1] * scratch_steps)
        lines.append(
            f"| {name(key)} | {extra} | " + " | ".join(f"{groups[key].get(n, float('nan')):.2f}" for n in steps) + " |"
        )
    scratch = groups[("shortcut", 1.0)]
    tuned = sorted(k for k in groups if k[0] == "finetune")
    best = min(tuned, key=lambda k: groups[k][1])
    cheapest_match = next((k for k in tuned if groups[k][1] <= scratch[1]), None)
    lines += [
        "",
        f"At 1 step the best fine-tuned model ({name(best)}) reaches FD {groups[best][1]:.2f} against "
        f"{scratch[1]:.2f} for the shortcut model trained from scratch and "
        f"{groups[('flow', 0.0)][1]:.2f} for the flow-matching model it started from.",
    ]
    if cheapest_match is not None:
        lines.append(
            f"Fine-tuning matches or beats training from scratch at 1 step already with {cheapest_match[1]:.0%} "
            f"of the from-scratch budget (on top of the flow-matching run itself)."
        )
    else:
        lines.append("No fine-tuning budget tried here matches the from-scratch shortcut model at 1 step.")
    lines.append(
        f"At 128 steps: fine-tuned {', '.join(f'{groups[k][128]:.2f}' for k in tuned)} vs scratch {scratch[128]:.2f} "
        f"and flow matching {groups[('flow', 0.0)][128]:.2f}."
    )
    return lines


def write_report(
    out: Path,
    plan,
    rows,
    cost,
    train_seconds,
    total_seconds,
    params,
    config,
    grids: Path,
    tracking: Path,
    conditional,
    threads: int,
    finetune=None,
) -> Path:
    fd = fd_by_steps(rows)
    knobs = {**Shortcut().args(), **config.objective_args}
    floor = next(float(r["fd_digits_floor"]) for r in rows)
    steps = sorted({int(r["steps"]) for r in rows})
    lines = [
        "# Shortcut models vs flow matching on unconditional digits",
        "",
        f"Generated by `shortcut demo --out {out}{' --finetune' if plan.finetune_fractions else ''}` in {fmt_minutes(total_seconds)} this run "
        f"(CPU, {threads} threads; stages already done are skipped on a rerun).",
        "",
        "## Setup",
        "- Data: scikit-learn digits, 8x8, train split (1,497 images), unconditional (null label everywhere).",
        f"- Network: {config.model} ({params / 1e6:.2f}M parameters), the same for both objectives.",
        f"- Budget per model: {config.steps} steps at batch {config.batch_size}, {optimiser_text(config)}, "
        f"EMA {config.ema_decay} with warm-up; "
        f"shortcut: one self-consistency row in {knobs['bootstrap_every']}, targets from the "
        f"{'EMA' if knobs['target_network'] == 'ema' else 'online'} network.",
        "- Training wall time this run: "
        + ", ".join(f"{NAMES[k]} {fmt_minutes(v)}" for k, v in train_seconds.items() if k in NAMES)
        + " (0 when resumed from a finished run), of which evaluation during training "
        + _share(train_seconds)
        + ".",
        f"- Metric: Fréchet distance in the features of the digits CNN (`fd-digits`), {plan.eval_num} samples per "
        "step count against the train split; floor = test split vs train split.",
        "",
        "## Fréchet distance by number of sampling steps",
        "",
        "| steps | " + " | ".join(str(n) for n in steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for objective in ("flow", "shortcut"):
        lines.append(f"| {NAMES[objective]} | " + " | ".join(f"{fd[objective][n]:.2f}" for n in steps) + " |")
    lines += [
        "| data floor | " + " | ".join(f"{floor:.2f}" for _ in steps) + " |",
        "",
        "![FD against sampling steps](eval/metric_vs_steps.png)",
        "",
        "## During training (fixed noise set)",
        "",
        f"FD at {', '.join(map(str, plan.track_steps))} steps every {plan.track_every} training steps and at the end, "
        f"{plan.track_num} samples from the same noise each time (so the curve does not oscillate as an "
        "FID of one fresh batch per evaluation does): the evaluation during training of every run "
        "(`eval_every`, RUN/eval.csv).",
        "",
        f"![FD against training step]({tracking.name})",
        "",
        "## Samples from the same noise",
        "",
        "Top row flow matching, bottom row shortcut; 1, 2, 4 and 128 steps.",
        "",
        f"![grids]({grids.name})",
        "",
        "## Training cost",
        "",
        f"Shortcut over flow matching, same model and batch, steps alternated ({plan.timing_repeats} each): "
        f"**{cost['ratio']:.3f}** ({cost['shortcut_ms']:.1f} ms vs {cost['flow_ms']:.1f} ms per step); "
        f"the FLOP cost model 1 + 2f/3 gives {cost['cost_model']:.3f}. On a CPU, small networks cost "
        "mostly per-operation overhead, so the teacher's passes on few rows cost more than their share "
        "(see benchmarks/RESULTS.md).",
        "",
        "## First question: does shortcut training help at many steps?",
        "",
    ]
    verdict = compare_at(fd, 128)
    s128, f128 = fd["shortcut"][128], fd["flow"][128]
    lines.append(
        f"At 128 steps the shortcut model is **{verdict}** compared with flow matching here: "
        f"FD {s128:.2f} vs {f128:.2f} ({(s128 / f128 - 1) * 100:+.1f}%; 'equal' means within 5%), "
        f"with the data floor at {floor:.2f}. At 1 step: {fd['shortcut'][1]:.2f} vs {fd['flow'][1]:.2f}."
    )
    lines += ["", "## Quality goals", ""]
    for text, met, numbers in goals(fd):
        lines.append(f"- [{'x' if met else ' '}] {text}: {numbers}")
    if conditional is not None:
        lines += [
            "",
            f"## Class-conditional checkpoint ({conditional['label']})",
            "",
            "| guidance | " + " | ".join(f"{r['steps']} steps" for r in conditional["rows"][1.0]) + " |",
            "|---|" + "---|" * len(conditional["rows"][1.0]),
        ]
        for w, rs in conditional["rows"].items():
            lines.append(
                f"| w = {w:g}: FD / class accuracy | "
                + " | ".join(f"{r['fd_digits']:.2f} / {100 * r['class_accuracy']:.1f}%" for r in rs)
                + " |"
            )
        rel = Path(conditional["sheet"]).relative_to(out)
        lines += ["", f"Guided samples (w = 1.5), one class per row: ![conditional]({rel})"]
    if finetune:
        lines += [
            "",
            "## Second question: can flow matching be fine-tuned into a shortcut model?",
            "",
            "Each fine-tuned model starts from the flow-matching model above (online and EMA weights, fresh "
            "optimizer) and trains with the shortcut objective for a fraction of the from-scratch budget; "
            f"FD over {plan.eval_num} samples from the same noise as the main table.",
            "",
        ]
        lines += finetune_lines(finetune, config.steps)
    flags = " --finetune" if finetune else ""
    lines += ["", "## Reproduce", "", f"```bash\nshortcut demo --out {out}{flags}\n```", ""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path
