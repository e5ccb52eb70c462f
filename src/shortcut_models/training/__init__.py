"""Training: the loop (:class:`Trainer`), the EMA of the weights, and fine-tuning from a checkpoint."""

from .ema import EMA
from .init_from import InitSource, load_initial_weights
from .networks import check_network
from .trainer import Trainer

__all__ = ["EMA", "InitSource", "Trainer", "check_network", "load_initial_weights"]
