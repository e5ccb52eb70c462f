"""The teacher run of the distillation objectives (``teacher=RUN``): load it, hand it to the objective.

An objective whose class sets ``teacher_run`` (consistency and progressive distillation) builds its
targets with a trained network, of a run trained with the objective its class names in
``teacher_objective`` (flow matching for both). The trainer (this layer; objectives never read
checkpoints) reads the teacher run's latest checkpoint (or the checkpoint named) when it resolves the run
(:func:`read_teacher`), builds a frozen copy of the run's network, loads the teacher's EMA weights into
it and binds it to the objective. A fresh run without ``init_from`` starts its student from the same
checkpoint (the authors' recipe).

Every checkpoint of such a run also holds the teacher's weights (its training state, key
``teacher``): progressive distillation replaces its teacher by the student at each stage, and a
resumed run takes the teacher back from its own checkpoint, never from the teacher run again.
"""

from __future__ import annotations

import copy

from torch import nn

from .. import checkpoints as ckpt
from ..config import TrainConfig
from ..errors import UserError
from ..objectives import OBJECTIVES
from .init_from import SourceCheckpoint, load_network, read_source


def read_teacher(cfg: TrainConfig, run: str) -> SourceCheckpoint:
    """The checkpoint of teacher run ``run`` and its config; UserError when none is named, it is missing, or
    it was trained with another objective than the one ``cfg``'s objective distils (its ``teacher_objective``).
    Whether it has the run's data and network is checked once the run's config is resolved
    (:func:`.init_from.check_compatible`)."""
    wanted = OBJECTIVES[cfg.objective].teacher_objective
    if not run:
        raise UserError(
            f"objective {cfg.objective} needs teacher=RUN (a {OBJECTIVES[wanted].title} run or checkpoint directory)"
        )
    teacher = read_source(run, "teacher")
    trained = teacher.training.get("objective")
    if trained != wanted:
        raise UserError(
            f"teacher {teacher.path} was trained with objective {trained!r}; it must be {OBJECTIVES[wanted].title}"
        )
    return teacher


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen copy (eval mode, no gradient) of the plain module under ``model``'s wrappers."""
    return copy.deepcopy(ckpt.unwrap(model)).eval().requires_grad_(False)


def load_teacher(teacher: nn.Module, source: SourceCheckpoint) -> None:
    """Load the EMA weights of ``source`` into ``teacher``."""
    load_network(teacher, source.path / ckpt.EMA_WEIGHTS)
