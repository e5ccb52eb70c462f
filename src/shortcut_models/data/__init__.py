"""Data: seeded 2-D toys, scikit-learn digits, latent caches, and step-indexed training sources."""

from .info import SourceInfo
from .registry import build_source, describe_source
from .sources import DataSource, TensorSource, ToySource, take_rows
from .toy2d import TOYS, on_checkerboard, toy_samples

__all__ = [
    "TOYS",
    "DataSource",
    "SourceInfo",
    "TensorSource",
    "ToySource",
    "build_source",
    "describe_source",
    "on_checkerboard",
    "take_rows",
    "toy_samples",
]
