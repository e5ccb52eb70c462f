"""Training: the loop (:class:`Trainer`), the EMA of the weights, and fine-tuning from a checkpoint."""

from .ema import EMA
from .init_from import InitSource, load_initial_weights
from .trainer import Trainer

__all__ = ["EMA", "InitSource", "Trainer", "load_initial_weights"]
