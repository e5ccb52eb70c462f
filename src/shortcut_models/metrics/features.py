"""Feature extractors for Fréchet distances: one small interface, four implementations.

Every extractor has a ``name``, a feature dimension ``dim`` and is called on a batch:
``extractor(images) -> [N, dim]`` float32. Images are float tensors in [-1, 1], ``[N, C, H, W]``
(the pixel convention of the whole project); :class:`Coordinates2D` takes 2-D points [N, 2] instead.
Extraction never tracks gradients.

- ``"fd-digits"`` -> :class:`DigitsFeatureNet`: a small CNN trained on the digits train split
  (``shortcut_models.data.digits``); its 64-d penultimate layer gives the features, its head the
  class logits. Its trained weights ship with the package; see :func:`load_digits_feature_net`.
- ``"fid"`` -> :class:`InceptionFeatures`: the 2048-d pool features of the FID Inception-v3 network,
  taken from the PyPI package ``torch-fidelity`` (see the class for why that package).
- ``"fd-dinov2"`` -> :class:`DinoV2Features`: the CLS token of a DINOv2 ViT (1024-d for ViT-L/14), from
  the official weights file given as a path (written here in plain torch; nothing is downloaded).
- ``"coords"`` -> :class:`Coordinates2D`: identity features of 2-D toy points.

:func:`get_feature_extractor` builds one by name.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from .digits_net import (  # noqa: F401  (re-exported)
    DigitsFeatureNet,
    DigitsNetRecipe,
    default_cache_dir,
    digits_feature_net_path,
    load_digits_feature_net,
    test_accuracy,
    train_digits_feature_net,
)
from .dinov2 import DinoV2Features
from .inception import InceptionFeatures, _inception_network_class  # noqa: F401  (re-exported)

__all__ = [
    "FeatureExtractor",
    "DigitsNetRecipe",
    "DigitsFeatureNet",
    "default_cache_dir",
    "digits_feature_net_path",
    "train_digits_feature_net",
    "load_digits_feature_net",
    "test_accuracy",
    "InceptionFeatures",
    "DinoV2Features",
    "Coordinates2D",
    "FEATURE_EXTRACTORS",
    "get_feature_extractor",
]


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps a batch of images in [-1, 1], ``[N, C, H, W]``, to float32 features ``[N, dim]``."""

    name: str
    dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class Coordinates2D:
    """Identity features for 2-D toy data: points [N, 2] -> float32 [N, 2] (``name = "coords"``)."""

    name = "coords"
    dim = 2

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        points = torch.as_tensor(points)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"Coordinates2D expects points [N, 2], got {tuple(points.shape)}")
        return points.detach().to(torch.float32).clone()


FEATURE_EXTRACTORS = {
    "fd-digits": load_digits_feature_net,
    "fid": InceptionFeatures,
    "fd-dinov2": DinoV2Features,
    "coords": Coordinates2D,
}


def get_feature_extractor(name: str, **kwargs) -> FeatureExtractor:
    """Build the extractor called ``name`` ("fd-digits", "fid", "fd-dinov2" or "coords"); kwargs go to its
    constructor.

    "fd-digits" takes ``cache_dir``, ``device``, ``recipe``; "fid" and "fd-dinov2" take ``weights``,
    ``device``, ``batch_size``; "coords" takes none.
    """
    if name not in FEATURE_EXTRACTORS:
        raise ValueError(f"unknown feature extractor {name!r}; choose from {', '.join(FEATURE_EXTRACTORS)}")
    return FEATURE_EXTRACTORS[name](**kwargs)
