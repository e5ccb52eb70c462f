"""A trained run as a diffusers pipeline (``pip install 'shortcut-models[diffusers]'``).

    from shortcut_models.diffusers import ShortcutPipeline
    pipe = ShortcutPipeline.from_pretrained("exported")   # written by `shortcut export --format diffusers`
    images = pipe(class_labels=[0, 1, 2], num_inference_steps=1).images

:class:`ShortcutPipeline` (pipeline.py) runs :class:`ShortcutNetwork` (network.py, the package's DiT or
MLP as a diffusers model) with :class:`ShortcutScheduler` (scheduler.py, the Euler steps of
``shortcut sample``) and, for latent models, decodes with the VAE; :func:`export_diffusers` (export.py)
writes a run as a pipeline folder with its model card (card.py).

diffusers is an optional dependency: the classes that subclass its types are imported on first use
(``from shortcut_models.diffusers import ShortcutPipeline`` imports diffusers), so importing the package,
the ``shortcut`` command and :func:`export_diffusers`'s module never do.
"""

from __future__ import annotations

import importlib
from typing import Any

from .export import Exported, export_diffusers

_NEEDS_DIFFUSERS = {"ShortcutNetwork": "network", "ShortcutPipeline": "pipeline", "ShortcutScheduler": "scheduler"}

__all__ = ["Exported", "ShortcutNetwork", "ShortcutPipeline", "ShortcutScheduler", "export_diffusers"]


def __getattr__(name: str) -> Any:
    """The classes that subclass diffusers' types, imported (with diffusers) on first use."""
    if name in _NEEDS_DIFFUSERS:
        return getattr(importlib.import_module(f"{__name__}.{_NEEDS_DIFFUSERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
