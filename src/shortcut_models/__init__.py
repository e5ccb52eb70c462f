"""shortcut-models: one-network few-step generation (shortcut models) and the flow-matching baseline.

Conventions: t = 0 is noise, t = 1 is data; d is the step size (1 = one step, 1/128 the finest);
every network is called as ``model(x_t, t, d, y)`` with ``y == num_classes`` the null label.

The public interface::

    import shortcut_models as sm
    sm.DiT, sm.MLP                      # networks (also sm.models.DiT, sm.models.MLP)
    sm.FlowMatching, sm.Shortcut        # objectives (sm.objectives.OBJECTIVES is the registry)
    sm.sample                           # Euler sampler in any number of steps from 1 to 128
    sm.TrainConfig, sm.Trainer          # a training run (sm.train: with evaluation during training)
    sm.load_model                       # a checkpoint (or run directory) as a sampler
"""

from . import checkpoints, data, evaluation, inference, models, objectives, path, sampling, training
from .config import PRESETS, TrainConfig, build_config
from .experiments import train
from .inference import LoadedModel, load_model
from .models import MLP, DiT
from .objectives import FlowMatching, Objective, Shortcut
from .sampling import sample, step_schedule
from .training import EMA, Trainer
from .version import __version__

__all__ = [
    "DiT",
    "EMA",
    "MLP",
    "PRESETS",
    "FlowMatching",
    "LoadedModel",
    "Objective",
    "Shortcut",
    "TrainConfig",
    "Trainer",
    "__version__",
    "build_config",
    "checkpoints",
    "data",
    "evaluation",
    "inference",
    "load_model",
    "models",
    "objectives",
    "path",
    "sample",
    "sampling",
    "step_schedule",
    "train",
    "training",
]
