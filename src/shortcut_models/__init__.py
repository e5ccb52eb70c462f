"""shortcut-models: one-network few-step generation (shortcut models) and the flow-matching baseline.

Conventions: t = 0 is noise, t = 1 is data; d is the step size (1 = one step, 1/128 the finest);
every network is called as ``model(x_t, t, d, y)`` with ``y == num_classes`` the null label.
"""

from . import models, objectives, path
from .sampling import sample, step_schedule

__version__ = "0.1.0"

__all__ = ["models", "objectives", "path", "sample", "step_schedule", "__version__"]
