"""A trained network as a sampler: checkpoints loaded without their data, per-sample-seeded generation
(split over processes under torchrun), and sample sheets."""

from .model import (
    LoadedModel,
    check_finite,
    generate_shared,
    load_autoencoder,
    load_model,
    non_finite_rows,
    read_spec,
    sample_blocks,
)
from .sheets import GRID_STEPS, write_sample_sheets

__all__ = [
    "GRID_STEPS",
    "LoadedModel",
    "check_finite",
    "generate_shared",
    "load_autoencoder",
    "load_model",
    "non_finite_rows",
    "read_spec",
    "sample_blocks",
    "write_sample_sheets",
]
