"""Data: seeded 2-D toys, scikit-learn digits, and step-indexed training sources."""

from .sources import DataSource, TensorSource, ToySource, build_source
from .toy2d import TOYS, on_checkerboard, toy_samples

__all__ = ["DataSource", "TensorSource", "ToySource", "build_source", "TOYS", "on_checkerboard", "toy_samples"]
