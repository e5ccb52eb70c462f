"""A trained network as a sampler: checkpoints loaded without their data, per-sample-seeded generation
(split over processes under torchrun), and sample sheets."""

from .model import LoadedModel, generate_shared, load_autoencoder, load_model, read_spec, sample_blocks
from .sheets import GRID_STEPS, write_sample_sheets

__all__ = [
    "GRID_STEPS",
    "LoadedModel",
    "generate_shared",
    "load_autoencoder",
    "load_model",
    "read_spec",
    "sample_blocks",
    "write_sample_sheets",
]
