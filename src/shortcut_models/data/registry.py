"""Data sources by name: a 2-D toy, 'digits', 'latents:DIR' (a `shortcut encode` cache) or
'synthetic:CxHxW[:CLASSES]' (random data for benchmarks).

:func:`build_source` makes the source; :func:`describe_source` says what it holds (shapes, classes,
autoencoder) without loading any data, e.g. to load a checkpoint for sampling where the data is absent.
"""

from __future__ import annotations

from ..errors import UserError
from .digits import IMAGE_SHAPE as DIGITS_SHAPE
from .digits import NUM_CLASSES as DIGITS_CLASSES
from .digits import load_digits
from .info import SourceInfo
from .latents import LatentSource, describe_cache
from .sources import DataSource, TensorSource, ToySource
from .synthetic import PREFIX as SYNTHETIC_PREFIX
from .synthetic import SyntheticSource, parse_synthetic
from .toy2d import TOYS

LATENTS_PREFIX = "latents:"


def _unknown(name: str) -> UserError:
    choices = ", ".join([*TOYS, "digits", "latents:DIR", "synthetic:CxHxW[:CLASSES]"])
    return UserError(f"unknown data {name!r}; choose from {choices}")


def build_source(name: str) -> DataSource:
    """The data source called ``name`` (see the module docstring); UserError for an unknown name."""
    if name.startswith(LATENTS_PREFIX):
        return LatentSource(name[len(LATENTS_PREFIX) :], name=name)
    if name.startswith(SYNTHETIC_PREFIX):
        return SyntheticSource(name)
    if name in TOYS:
        return ToySource(name)
    if name == "digits":
        x, y = load_digits("train")
        return TensorSource("digits", x, y, DIGITS_CLASSES, heldout=load_digits("test"))
    raise _unknown(name)


def describe_source(name: str) -> SourceInfo:
    """What ``build_source(name).info`` would say, without loading data (a latent cache: its manifest only)."""
    if name.startswith(LATENTS_PREFIX):
        return describe_cache(name[len(LATENTS_PREFIX) :], name=name)
    if name.startswith(SYNTHETIC_PREFIX):
        shape, num_classes = parse_synthetic(name)
        return SourceInfo.plain(name, shape, num_classes)
    if name in TOYS:
        return SourceInfo.plain(name, (2,), TOYS[name].num_classes)
    if name == "digits":
        return SourceInfo.plain(name, DIGITS_SHAPE, DIGITS_CLASSES)
    raise _unknown(name)
