"""A training run as ``shortcut train`` makes it: the trainer, with evaluation during training wired
from the config (``eval_every`` and the other eval_* keys)."""

from __future__ import annotations

from pathlib import Path

from .. import distributed
from ..config import TrainConfig, validate
from ..evaluation import TrainingEvaluator
from ..training import Trainer, check_network


def check_config(cfg: TrainConfig) -> None:
    """The checks of a config that ``shortcut train`` makes before any work, and ``shortcut config``,
    ``demo`` and ``study`` make the same way: every key's value, then the network's settings (``model``,
    ``model_args``), with no memory allocated and no data read. UserError (one line) naming the key."""
    validate(cfg)
    check_network(cfg)


def build_trainer(cfg: TrainConfig, out: str | Path, progress: bool = True) -> Trainer:
    """The :class:`Trainer` of ``cfg`` in run directory ``out``, with a :class:`TrainingEvaluator` when
    ``cfg.eval_every`` > 0. The trainer comes first (it refuses a batch too large for the device), then
    the metric (rank 0 first, filling caches), so a missing piece, such as FID reference statistics,
    stops the run before it trains. Under torchrun, call it inside
    :func:`shortcut_models.distributed.session`."""
    trainer = Trainer(cfg, out, progress=progress)
    if cfg.eval_every:
        with distributed.main_first():
            trainer.evaluator = TrainingEvaluator.from_config(cfg, out, trainer.device, progress)
    return trainer


def train(cfg: TrainConfig, out: str | Path, progress: bool = True) -> Trainer:
    """Train ``cfg`` into ``out`` (resuming from its latest checkpoint) and return the finished trainer;
    ``trainer.last_checkpoint`` is the final checkpoint, RUN/eval.csv the metric during training."""
    with distributed.session(cfg.device):
        trainer = build_trainer(cfg, out, progress)
        trainer.run()
    return trainer
