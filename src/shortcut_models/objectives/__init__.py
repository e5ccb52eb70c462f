"""Training objectives: flow matching (the baseline) and shortcut models, on one interface.

``targets(teacher, x1, y, generator) -> Targets`` builds a batch without gradient;
``loss(model, targets) -> (loss, logs)`` is the mean squared error over every element.
"""

from .base import Targets, regression_loss
from .flow_matching import FlowMatching
from .shortcut import Shortcut, level_strata

OBJECTIVES = {"shortcut": Shortcut, "flow": FlowMatching}

__all__ = ["Targets", "regression_loss", "FlowMatching", "Shortcut", "level_strata", "OBJECTIVES"]
