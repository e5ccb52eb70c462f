"""The main job: the study of shortcut models against flow matching in miniature, on embedded data.

``shortcut demo`` is a small study (:func:`demo_study`): flow matching and shortcut on unconditional
digits, one seed, the same budget, under the study's "tuned" recipe (each method's own recipe but the online
network as target, chosen by docs/demo/tuning.md), run by the study's runner (:func:`~.study.run_plan`). Each run is
evaluated during training (the digits Fréchet distance at 1 and 128 steps on a fixed noise set), both are
scored at 1..128 steps over thousands of samples, drawn side by side from the same noise and timed side
by side, and ``OUT/report.md`` is written from the study's report sections. Every stage is resumable: a
rerun skips the training and evaluations already done.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import build_config
from ..evaluation import digits_metric, evaluate_images
from ..inference import load_model, write_sample_sheets
from ..objectives import build_objective
from ..outputs import write_json
from .report import (
    cost_section,
    finetune_question,
    fmt_minutes,
    goals_section,
    grids_section,
    many_steps_question,
    mean_table,
    optimiser_text,
    reproduce_section,
    steps_label,
    write_report,
)
from .study import run_plan
from .study_plan import PRESETS, RECIPE_TEXT, StudyPlan, method_overrides, method_title
from .study_report import titled
from .study_scores import StudyResults

OBJECTIVES = ("flow", "shortcut")  # the two objectives the demo compares (names in the objective registry)
NETWORK = {"ema": "EMA", "online": "online"}  # a target_network value as the report names it
RECIPE = "tuned"  # the demo's recipe (study_plan.RECIPES): the online network as target (docs/demo/tuning.md)


@dataclass
class DemoPlan:
    """Budget of the demo (defaults: the README's `make demo`, 7-18 minutes on 2 CPU cores)."""

    overrides: list[str] = field(default_factory=list)
    track_every: int = 2000
    track_num: int = 2000
    track_steps: tuple[int, ...] = (1, 128)
    eval_num: int = 5000
    eval_steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    grid_steps: tuple[int, ...] = (1, 2, 4, 128)
    timing_repeats: int = 20
    conditional_ckpt: str | None = None
    finetune_fractions: tuple[float, ...] = ()  # e.g. (0.1, 0.25, 0.5): fine-tune flow matching into shortcut
    seed: int = 0  # the sampling noise of the scores and grids


def demo_study(plan: DemoPlan) -> StudyPlan:
    """The study the demo runs: flow matching and shortcut on digits under the demo's recipe (:data:`RECIPE`),
    the training seed and budget of the config (a ``steps=`` override sets the budget), each run from scratch
    evaluated during training at the plan's tracking budget, and the fine-tuning runs when asked."""
    cfg = build_config(PRESETS["digits"], "shortcut", None, plan.overrides)
    steps = ",".join(str(n) for n in plan.track_steps)
    tracking = (f"eval_every={plan.track_every}", f"eval_num={plan.track_num}", f"eval_steps=[{steps}]")
    return StudyPlan(
        steps=cfg.steps,
        seeds=(cfg.seed,),
        methods=OBJECTIVES,
        domains=("digits",),
        recipes=(RECIPE,),
        finetune=plan.finetune_fractions,
        eval_num=plan.eval_num,
        eval_steps=plan.eval_steps,
        grid_steps=plan.grid_steps,
        timing_repeats=plan.timing_repeats,
        sample_seed=plan.seed,
        overrides=[o for o in plan.overrides if not o.startswith("steps=")],
        tracking=(*tracking, "eval_metric=fd-digits"),
    )


def conditional_section(plan: DemoPlan, out: Path, progress: bool) -> dict[str, Any] | None:
    """Class accuracy by step count and guided sample sheets of a class-conditional checkpoint."""
    if not plan.conditional_ckpt:
        return None
    model, metric = load_model(plan.conditional_ckpt, "cpu"), digits_metric()
    rows = {}
    for w in (1.0, 1.5):
        num = min(plan.eval_num, 2000)
        rows[w] = evaluate_images(
            model, list(plan.grid_steps), num, metric, seed=plan.seed, cfg_scale=w, progress=progress
        )
    sheet = write_sample_sheets(model, out / "conditional", plan.grid_steps, cfg_scale=1.5)
    return {"label": model.label, "rows": rows, "sheet": sheet}


def conditional_lines(out: Path, conditional: dict[str, Any] | None) -> list[str]:
    """The section of the class-conditional checkpoint: FD and class accuracy by guidance and step count."""
    if conditional is None:
        return []
    rows = conditional["rows"]
    lines = [
        "| guidance | " + " | ".join(steps_label(r["steps"]) for r in rows[1.0]) + " |",
        "|---|" + "---|" * len(rows[1.0]),
    ]
    for w, rs in rows.items():
        cells = " | ".join(f"{r['fd_digits']:.2f} / {100 * r['class_accuracy']:.1f}%" for r in rs)
        lines.append(f"| w = {w:g}: FD / class accuracy | {cells} |")
    rel = Path(conditional["sheet"]).relative_to(out)
    lines += ["", f"Guided samples (w = 1.5), one class per row: ![conditional]({rel})"]
    return titled(f"Class-conditional checkpoint ({conditional['label']})", lines)


def demo_header(results: StudyResults, command: str) -> list[str]:
    return [
        "# Shortcut models vs flow matching on unconditional digits",
        "",
        f"Generated by `{command}`; this call took {fmt_minutes(results.seconds['this call'])} "
        f"(CPU, {results.machine['threads']} threads; stages already done are skipped on a rerun).",
        "",
    ]


def demo_setup(results: StudyResults, plan: DemoPlan) -> list[str]:
    """Data, network, budget, the shortcut knobs (the demo's recipe on top of the preset), the training time and
    the metric."""
    config, study = results.config, results.plan
    recipe = method_overrides(study, "shortcut", study.main_recipe)
    knobs = build_config(PRESETS["digits"], "shortcut", None, [*recipe, *study.overrides]).resolved_objective_args()
    own = build_objective("shortcut", 0).recipe.target_network
    return [
        "## Setup",
        "- Data: scikit-learn digits, 8x8, train split (1,497 images), unconditional (null label everywhere).",
        f"- Network: {config.model} ({results.params / 1e6:.2f}M parameters), the same for both objectives.",
        f"- Budget per model: {study.steps} steps at batch {config.batch_size}, {optimiser_text(config)}, "
        f"EMA {config.ema_decay} with warm-up; shortcut: one self-consistency row in {knobs['bootstrap_every']}, "
        f'targets from the {NETWORK[knobs["target_network"]]} network (recipe "{study.main_recipe}", '
        f"{RECIPE_TEXT[study.main_recipe]}; shortcut's own recipe, the paper's, takes the {NETWORK[own]} network).",
        f"- {training_time(results)}",
        f"- Metric: Fréchet distance in the features of the digits CNN (`fd-digits`), {plan.eval_num} samples per "
        "step count against the train split; floor = test split vs train split.",
        "",
    ]


def training_time(results: StudyResults) -> str:
    """Each model's training wall time (over every call that trained it) and the evaluations' share."""
    last = {}
    for r in results.scores.rows:
        if not r.get("init"):
            last[r["method"]] = (float(r["train_seconds"]), float(r.get("eval_seconds", 0.0)))
    total, evaluating = sum(t for t, _ in last.values()), sum(e for _, e in last.values())
    each = ", ".join(f"{method_title(m)} {fmt_minutes(t)}" for m, (t, _) in last.items())
    share = 100 * evaluating / total if total else 0.0
    return f"Training wall time: {each}, of which evaluation during training {fmt_minutes(evaluating)} ({share:.1f}%)."


def tracking_lines(plan: DemoPlan, figure: Path | None) -> list[str]:
    steps = ", ".join(map(str, plan.track_steps))
    return [
        f"FD at {steps} steps every {plan.track_every} training steps and at the end, {plan.track_num} samples from "
        "the same noise each time (so the curve does not oscillate as an FID of one fresh batch per evaluation "
        "does): the evaluation during training of every run (`eval_every`, RUN/eval.csv).",
        *(["", f"![FD against training step]({figure.name})"] if figure is not None else []),
    ]


def write_demo_report(results: StudyResults, plan: DemoPlan, conditional: dict[str, Any] | None) -> Path:
    """OUT/report.md of the demo, from the study's sections and the demo's own (setup, tracking, conditional)."""
    out, study, scores, figures = results.out, results.plan, results.scores, results.figures
    command = f"shortcut demo --out {out}{' --finetune' if plan.finetune_fractions else ''}"
    recipe = study.main_recipe
    fd = mean_table(scores, "fd_digits", "digits", list(study.methods), recipe, study.steps, study.eval_steps)
    if figures.get("fd") is not None:
        fd += ["", f"![FD against sampling steps]({figures['fd'].name})"]
    return write_report(
        out,
        [
            demo_header(results, command),
            demo_setup(results, plan),
            titled("Fréchet distance by number of sampling steps", fd),
            titled("During training (fixed noise set)", tracking_lines(plan, figures.get("tracking"))),
            grids_section(study, figures.get("grids")),
            titled("Training cost", cost_section(study, results.costs, results.config.batch_size)),
            titled("First question: does shortcut training help at many steps?", many_steps_question(scores, study)),
            goals_section(results),
            conditional_lines(out, conditional),
            titled(
                "Second question: can flow matching be fine-tuned into a shortcut model?",
                finetune_question(scores, study, results.winner),
            ),
            reproduce_section(command),
        ],
    )


def run_demo(out: Path, plan: DemoPlan, progress: bool = True) -> Path:
    """Run every stage (skipping those already done) and write OUT/report.md; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "plan.json", asdict(plan))
    results = run_plan(out, demo_study(plan), progress)
    return write_demo_report(results, plan, conditional_section(plan, out, progress))
