"""``shortcut export --format diffusers``: a checkpoint as a diffusers pipeline folder with its model card.

The folder (written whole or not at all)::

    model_index.json        the components: (module, class) pairs of shortcut_models and diffusers
    network/                config.json + diffusion_pytorch_model.safetensors (the EMA weights)
    scheduler/              scheduler_config.json (max_steps, the network's fixed step-size input if any)
    vae/                    the VAE that decodes the latents (latent models only)
    README.md               the model card (card.py); samples.png, its sample grid

Before the folder is put in place it is loaded back with ``ShortcutPipeline.from_pretrained`` (local files
only) and its samples at the grid's step counts are compared with the checkpoint's own (``shortcut sample``'s
computation, same noise): a difference above :data:`TOLERANCE` stops the export (RunError).

This module does not import diffusers itself (the ``shortcut`` command imports it): the pipeline classes are
imported when an export starts, and a missing diffusers is one line (UserError).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..autoencoders import StableDiffusionVAE
from ..errors import RunError, UserError
from ..images import save_sheet
from ..inference import LoadedModel, load_model
from ..outputs import write_text, writing_dir
from ..sampling import check_steps
from .card import dataset_name, eval_scores, model_card, training_scores

GRID = "samples.png"
CARD = "README.md"
GRID_SIZE = 16  # samples per panel of the grid
TOLERANCE = 1e-4  # largest difference allowed between the pipeline's samples and the checkpoint's (model space)
INSTALL = "pip install 'shortcut-models[diffusers]'"


@dataclass(frozen=True)
class Exported:
    """What :func:`export_diffusers` wrote: the folder, the checkpoint it holds, and the largest difference
    between the pipeline's samples and the checkpoint's (same noise) at the grid's step counts."""

    out: Path
    checkpoint: Path
    step: int
    max_difference: float
    scores: int  # rows of scores on the card (0: none found)


def export_diffusers(
    ckpt: str | Path,
    out: str | Path,
    *,
    device: str = "auto",
    grid_steps: Sequence[int] = (1, 2, 4),
    grid_labels: Sequence[int] | None = None,
    eval_results: str | Path | None = None,
    repo_id: str | None = None,
    license: str = "mit",
    dataset: str | None = None,
    report: Callable[[str], None] | None = None,
) -> Exported:
    """Write checkpoint ``ckpt`` (a checkpoint or run directory, or a hub id, as ``sm.load_model`` takes) as a
    diffusers pipeline folder ``out`` (absent or empty) that ``ShortcutPipeline.from_pretrained(out)`` loads.

    ``grid_steps`` and ``grid_labels`` (classes, row by row; default 0, 1, ... cycling) choose the card's
    sample grid; ``eval_results`` a ``shortcut eval`` output of this checkpoint whose scores join those of
    the run's ``eval.csv``; ``repo_id`` the name the card's code loads (default: ``out``); ``license`` and
    ``dataset`` the card's metadata (default dataset: the training data's name). UserError for bad input
    (no checkpoint or weights, a label outside the classes, a folder that holds files, no diffusers).
    """
    say = report or (lambda line: print(line, file=sys.stderr))
    out = Path(out)
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} already holds files; give a new or empty directory")
    steps = [check_steps(n) for n in grid_steps]
    pipeline_class, components, load = _diffusers_classes()
    loaded = load_model(ckpt, device, precision="fp32")
    if not loaded.is_image:
        raise UserError(
            f"{loaded.path} generates vectors of shape {list(loaded.spec.sample_shape)}; "
            "a diffusers pipeline is exported for image models only"
        )
    labels = _grid_labels(grid_labels, loaded.num_classes)
    results = (
        [] if eval_results is None else eval_scores(Path(eval_results), loaded.path, loaded.step, loaded.spec.objective)
    )
    scores = training_scores(loaded.path, loaded.step) + results
    pipe = pipeline_class(*components(loaded))
    say(f"exporting {loaded.path} (step {loaded.step}) to {out}")
    with writing_dir(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        reloaded = load(tmp).to(loaded.device)
        panels, difference = _compare(loaded, reloaded, steps, labels)
        if not difference <= TOLERANCE:
            raise RunError(
                f"the exported pipeline's samples differ from the checkpoint's by {difference:.3g} (more than "
                f"{TOLERANCE}); nothing written"
            )
        rows = max(1, round(GRID_SIZE**0.5))
        save_sheet(panels, tmp / GRID, rows=rows, title=f"{loaded.label}, seed 0")
        card = model_card(
            loaded,
            scores,
            repo_id or str(out),
            license,
            dataset or dataset_name(loaded.spec.data),
            GRID,
            steps,
            None if labels is None else labels.tolist(),
        )
        write_text(tmp / CARD, card)
    return Exported(out, loaded.path, loaded.step, difference, len(scores))


def _diffusers_classes() -> tuple[type, Callable[[LoadedModel], tuple[Any, ...]], Callable[[Path], Any]]:
    """The pipeline class, a function making its components from a loaded checkpoint and one loading a written
    folder quietly, from local files only (imports diffusers)."""
    try:
        from diffusers.utils import logging as diffusers_logging

        from .network import ShortcutNetwork
        from .pipeline import ShortcutPipeline
        from .scheduler import ShortcutScheduler
    except ImportError as exc:
        raise UserError(f"exporting to diffusers needs the diffusers package ({exc}); {INSTALL}") from None

    def components(loaded: LoadedModel) -> tuple[Any, ...]:
        network = ShortcutNetwork(network=loaded.spec.network, sample_shape=list(loaded.spec.sample_shape))
        network.net.load_state_dict(loaded.model.state_dict())
        ae = loaded.autoencoder
        vae = ae.vae if isinstance(ae, StableDiffusionVAE) else None
        try:
            scheduler = ShortcutScheduler.for_objective(loaded.objective)
        except ValueError as exc:
            raise UserError(f"{loaded.path}: {exc}") from None
        return network.to(loaded.device).eval(), scheduler, vae

    def load(folder: Path) -> Any:
        shown = diffusers_logging.is_progress_bar_enabled()
        diffusers_logging.disable_progress_bar()  # diffusers' bar of the components loaded
        try:
            pipe = ShortcutPipeline.from_pretrained(folder, local_files_only=True)
        finally:
            if shown:
                diffusers_logging.enable_progress_bar()
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return ShortcutPipeline, components, load


def _grid_labels(labels: Sequence[int] | None, num_classes: int) -> torch.Tensor | None:
    """The grid's labels: ``labels`` checked against the classes, else 0, 1, ... cycling; None if unconditional."""
    if num_classes == 0:
        if labels:
            raise UserError("grid classes given, but the model is unconditional")
        return None
    if not labels:
        return torch.arange(GRID_SIZE) % num_classes
    bad = [y for y in labels if not 0 <= int(y) < num_classes]
    if bad:
        raise UserError(f"grid class {bad[0]} is not one of this model's classes 0..{num_classes - 1}")
    return torch.tensor([int(y) for y in labels], dtype=torch.long)


def _compare(
    loaded: LoadedModel, pipe: Any, steps: list[int], labels: torch.Tensor | None
) -> tuple[list[tuple[str, torch.Tensor]], float]:
    """The grid's panels (images of the pipeline at each step count, seed 0) and the largest difference between
    the pipeline's samples and the checkpoint's (model space, same noise)."""
    count = GRID_SIZE if labels is None else len(labels)
    panels, worst = [], 0.0
    for n in steps:
        ours = loaded.generate_indices(torch.arange(count), n, seed=0, labels=labels)
        kwargs = {"batch_size": count} if labels is None else {"class_labels": labels}
        theirs = pipe(**kwargs, num_inference_steps=n, seed=0, output_type="latent").images.float()
        worst = max(worst, float((theirs - ours).abs().max()))
        panels.append((f"{n} step{'s' if n > 1 else ''}", loaded.decode(theirs).cpu()))
    return panels, worst
