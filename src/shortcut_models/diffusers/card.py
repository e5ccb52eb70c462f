"""The model card (README.md) of an exported pipeline, in the Hugging Face format: YAML metadata, then text.

Its scores come from the run's own evaluation: the rows of ``RUN/eval.csv`` (evaluation during training) at
the exported checkpoint's step, and those of a ``shortcut eval`` output (``metrics.json``) of the same
checkpoint when one is given. Where there are none the card says so; it never shows a number that was not
measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import checkpoints as ckpt
from ..errors import UserError
from ..evaluation.during_training import FILE as TRAINING_EVAL
from ..evaluation.during_training import LEADING, read_rows
from ..inference import LoadedModel
from ..objectives import OBJECTIVES

CARD_STEPS = (1, 2, 4, 128)  # the step counts the card's table shows
NOT_METRICS = {"step", *LEADING, "seconds", "class_accuracy", "in_square", "in_square_data"}
TRAINING_KEYS = (
    "preset",
    "data",
    "model",
    "objective",
    "steps",
    "batch_size",
    "optimizer",
    "lr",
    "lr_schedule",
    "warmup_steps",
    "ema_decay",
    "precision",
    "seed",
)


@dataclass(frozen=True)
class Scores:
    """One metric at several step counts, from one evaluation of the exported checkpoint."""

    source: str  # where the numbers come from, in words
    metric: str  # the column name, e.g. fd_digits
    num: int  # samples per step count
    cfg_scale: float
    values: dict[int, float] = field(default_factory=dict)  # step count -> value
    floor: float | None = None  # the data-vs-data value of the metric, where it has one


def training_scores(checkpoint: Path, step: int) -> list[Scores]:
    """The rows of ``RUN/eval.csv`` at training step ``step`` (``checkpoint`` is ``RUN/checkpoints/step_N``),
    one :class:`Scores` per guidance scale; none for a checkpoint outside a run directory."""
    run_dir = Path(checkpoint).parent.parent
    if Path(checkpoint).parent.name != ckpt.CHECKPOINTS:
        return []
    rows = [r for r in read_rows(run_dir / TRAINING_EVAL) if int(r["step"]) == step]
    where = f"evaluation during training ({run_dir.name}/{TRAINING_EVAL}, step {step})"
    return _group(rows, where)


def eval_scores(results: Path, checkpoint: Path, step: int, objective: str) -> list[Scores]:
    """The rows of a ``shortcut eval`` output (its directory or ``metrics.json``) that measured ``checkpoint``;
    UserError when the file is unreadable or holds none of them."""
    file = Path(results) / "metrics.json" if Path(results).is_dir() else Path(results)
    try:
        data = json.loads(file.read_text())
        rows, metric = data["rows"], data["metric"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError("its rows are not a list of objects")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read the `shortcut eval` results {file}: {exc}") from None
    same = [r for r in rows if Path(str(r.get("checkpoint", ""))).resolve() == Path(checkpoint).resolve()]
    if not same:  # measured from another working directory: the same step and objective, one checkpoint only
        same = [r for r in rows if r.get("train_step") == step and r.get("objective") == objective]
        if len({r.get("checkpoint") for r in same}) > 1:
            same = []
    if not same:
        raise UserError(f"{file} holds no scores of the checkpoint {checkpoint} (step {step})")
    return _group([{**r, "_metric": metric} for r in same], f"`shortcut eval` ({file})")


def _group(rows: list[dict[str, Any]], source: str) -> list[Scores]:
    """One Scores per guidance scale of ``rows`` (eval.csv or metrics.json rows), the metric column found by name."""
    out = []
    for scale in sorted({float(r["cfg_scale"]) for r in rows}):
        these = [r for r in rows if float(r["cfg_scale"]) == scale]
        metric = _metric_column(these[0])
        values = {int(r["steps"]): float(r[metric]) for r in these if int(r["steps"]) in CARD_STEPS}
        floors = [float(r[f"{metric}_floor"]) for r in these if r.get(f"{metric}_floor") not in (None, "")]
        if values:
            num = int(these[0]["num"])
            out.append(Scores(source, metric, num, scale, values, floors[0] if floors else None))
    return out


def _metric_column(row: dict[str, Any]) -> str:
    """The metric's column of a row: named in a metrics.json, else the one eval.csv column that is no other."""
    if "_metric" in row:
        return str(row["_metric"]).replace("-", "_")
    found = [k for k in row if k not in NOT_METRICS and not k.endswith("_floor")]
    return found[0]


def dataset_name(data: str) -> str:
    """The training data's name for the card: the cache folder's name for ``latents:DIR``, else the name."""
    kind, _, rest = data.partition(":")
    return Path(rest.rstrip("/")).name if kind == "latents" and rest else data


def model_card(
    loaded: LoadedModel,
    scores: list[Scores],
    repo_id: str,
    license: str,
    dataset: str,
    grid: str,
    grid_steps: list[int],
    grid_labels: list[int] | None,
) -> str:
    """README.md of the exported folder: metadata, what the model is, how to use it, how it was trained, its
    scores at 1/2/4/128 steps and the sample grid (the file ``grid`` beside it)."""
    lines = [
        "---",
        *_yaml(_metadata(loaded, license, dataset)),
        "---",
        "",
        *_introduction(loaded, dataset),
        *_use_it(loaded, repo_id),
        "## Training",
        "",
        *_training_table(loaded),
        "",
        "## Scores",
        "",
        *_score_lines(scores, loaded.step),
        "",
        *_samples(grid, grid_steps, grid_labels),
    ]
    return "\n".join(lines)


def _metadata(loaded: LoadedModel, license: str, dataset: str) -> dict:
    """The card's YAML header: what the Hub indexes the model by."""
    spec = loaded.spec
    return {
        "library_name": "diffusers",
        "pipeline_tag": "unconditional-image-generation",
        "license": license,
        "datasets": [dataset],
        "objective": spec.objective,
        "tags": [
            "shortcut-models",
            spec.objective,
            "few-step-generation",
            "class-conditional" if spec.num_classes > 0 else "unconditional",
        ],
    }


def _introduction(loaded: LoadedModel, dataset: str) -> list[str]:
    """The title and one paragraph: the network, its objective, its data and its step range."""
    spec, title = loaded.spec, _title(loaded.spec.objective)
    params = sum(p.numel() for p in loaded.model.parameters())
    c, h, w = spec.data_shape
    what = f"{spec.num_classes} classes" if spec.num_classes > 0 else "unconditional"
    space = f"in the {'x'.join(map(str, spec.sample_shape))} latent space of a VAE" if spec.autoencoder else "in pixels"
    return [
        f"# {title} on {dataset}: {h}x{w} images in 1 to {spec.max_steps} steps",
        "",
        f"A {spec.network['class']} velocity network ({params / 1e6:.2f}M parameters) trained with the **{title}** "
        f"objective by the `shortcut-models` package on `{dataset}` ({what}, {c}-channel {h}x{w} images, "
        f"generated {space}). It generates in any number of steps from 1 to {spec.max_steps}; exported from "
        f"checkpoint step {loaded.step}.",
        "",
    ]


def _use_it(loaded: LoadedModel, repo_id: str) -> list[str]:
    """How to install and call the pipeline, and what its seeds and files mean."""
    labels = "class_labels=[0, 1, 2, 3], " if loaded.spec.num_classes > 0 else "batch_size=4, "
    return [
        "## Use it",
        "",
        "```bash",
        "pip install 'shortcut-models[diffusers]'",
        "```",
        "",
        "```python",
        "from shortcut_models.diffusers import ShortcutPipeline",
        f"pipe = ShortcutPipeline.from_pretrained({json.dumps(repo_id)})",
        f"images = pipe({labels}num_inference_steps=1).images",
        "```",
        "",
        "`num_inference_steps` takes any count from 1 to 128 (no reload: the scheduler is set per call); "
        "`guidance_scale` sets classifier-free guidance as the model was trained for it. `seed=S` starts "
        "sample i from the noise `shortcut sample --seed S` gives sample i, so "
        f"`pipe({labels}seed=0)` returns the images of `shortcut sample --seed 0` with those labels; "
        "`generator=` draws diffusers-style noise instead. Nothing in this folder runs as code: "
        "`model_index.json` names classes of the installed `shortcut_models` and `diffusers` packages, and the "
        "weights are safetensors.",
        "",
    ]


def _samples(grid: str, grid_steps: list[int], grid_labels: list[int] | None) -> list[str]:
    """The sample grid and what its panels show."""
    steps = ", ".join(map(str, grid_steps))
    return [
        "## Samples",
        "",
        f"![samples at {steps} steps]({grid})",
        "",
        f"The same noise (`seed=0`) at {steps} step(s), one panel each"
        + (f"; classes {', '.join(map(str, grid_labels))}, row by row." if grid_labels else "."),
        "",
    ]


def _title(objective: str) -> str:
    cls = OBJECTIVES.get(objective)
    name = cls.title if cls is not None else objective
    return name[:1].upper() + name[1:]


def _yaml(metadata: dict[str, Any]) -> list[str]:
    """YAML lines of flat metadata: strings quoted as JSON (a valid YAML scalar), lists one item a line."""
    out = []
    for key, value in metadata.items():
        if isinstance(value, list):
            out += [f"{key}:", *[f"- {json.dumps(str(v))}" for v in value]]
        else:
            out.append(f"{key}: {json.dumps(str(value))}")
    return out


def _training_table(loaded: LoadedModel) -> list[str]:
    training = loaded.training or {}
    rows = [(k, training[k]) for k in TRAINING_KEYS if k in training]
    rows.append(("objective knobs", ", ".join(f"{k}={v}" for k, v in sorted(loaded.spec.objective_args.items()))))
    rows.append(("network", json.dumps(loaded.spec.network["args"], sort_keys=True)))
    rows.append(("exported checkpoint", f"step {loaded.step} (EMA weights)"))
    return ["| setting | value |", "|---|---|", *[f"| {k} | {_cell(v)} |" for k, v in rows]]


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _score_lines(scores: list[Scores], step: int) -> list[str]:
    if not scores:
        return [
            f"No evaluation of this checkpoint was found (no rows at step {step} in the run's "
            f"{TRAINING_EVAL}, and no `shortcut eval` results were given to the export), so this card reports "
            "no scores."
        ]
    head = ["source", "metric", "samples", "guidance", *[f"{n} step{'s' if n > 1 else ''}" for n in CARD_STEPS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in scores:
        cells = [f"{s.values[n]:.4g}" if n in s.values else "not measured" for n in CARD_STEPS]
        lines.append(f"| {s.source} | {s.metric} | {s.num} | {s.cfg_scale:g} | " + " | ".join(cells) + " |")
    floors = sorted({(s.metric, s.floor) for s in scores if s.floor is not None})
    if floors:
        lines += [
            "",
            "Data floor (the metric between two sets of real data): "
            + ", ".join(f"{m} {f:.4g}" for m, f in floors)
            + ".",
        ]
    lines += [
        "",
        "Lower is better for Fréchet distances (fd_digits, fid, fd_dinov2) and the sliced Wasserstein distance.",
    ]
    return lines
