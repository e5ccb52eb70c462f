"""The teacher run of the distillation objectives (``teacher=RUN``): load it, hand it to the objective.

An objective whose class sets ``teacher_run`` (consistency and progressive distillation) builds its
targets with a trained network, of a run trained with the objective its class names in
``teacher_objective`` (flow matching for both). The trainer (this layer; objectives never read
checkpoints) builds a copy of the run's network, loads the EMA weights of the teacher run's latest
checkpoint (or of the checkpoint named) into it, freezes it and binds it to the objective. A fresh
run without ``init_from`` starts its student from the same checkpoint (the authors' recipe).

Every checkpoint of such a run also holds the teacher's weights (its training state, key
``teacher``): progressive distillation replaces its teacher by the student at each stage, and a
resumed run takes the teacher back from its own checkpoint, never from the teacher run again.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from .. import checkpoints as ckpt
from ..config import TrainConfig
from ..errors import UserError
from ..objectives import OBJECTIVES
from .init_from import check_compatible, load_network


def teacher_checkpoint(cfg: TrainConfig, run: str) -> Path:
    """The checkpoint of teacher run ``run``; UserError when it is missing, was trained with another objective
    than the one ``cfg``'s objective distils (its ``teacher_objective``), or on other data or with another
    network."""
    wanted = OBJECTIVES[cfg.objective].teacher_objective
    if not run:
        raise UserError(
            f"objective {cfg.objective} needs teacher=RUN (a {OBJECTIVES[wanted].title} run or checkpoint directory)"
        )
    try:
        path = ckpt.resolve_checkpoint(run)
    except UserError as exc:
        raise UserError(f"teacher: {exc}") from None
    source = ckpt.training_config(ckpt.read_config(path))
    if source.get("objective") != wanted:
        raise UserError(
            f"teacher {path} was trained with objective {source.get('objective')!r}; "
            f"it must be {OBJECTIVES[wanted].title}"
        )
    check_compatible(source, cfg, path)
    return path


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen copy (eval mode, no gradient) of the plain module under ``model``'s wrappers."""
    return copy.deepcopy(ckpt.unwrap(model)).eval().requires_grad_(False)


def load_teacher(teacher: nn.Module, path: Path) -> None:
    """Load the EMA weights of checkpoint ``path`` into ``teacher``."""
    load_network(teacher, path / ckpt.EMA_WEIGHTS)
