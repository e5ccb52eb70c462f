"""The Euler scheduler of networks conditioned on the step size (shortcut models, MeanFlow, ...), for diffusers.

Time runs from t = 0 (noise) to t = 1 (data), so ``timesteps`` increase, unlike most diffusers schedulers;
they are the times in [0, 1) where the steps start, and the network is called as ``network(x_t, t, d, y)``
with ``d`` the step-size input of :attr:`ShortcutScheduler.step_size_inputs`. The steps are those of
``shortcut sample`` (:func:`shortcut_models.sampling.step_schedule`): any count from 1 to ``max_steps``;
powers of two take equal steps, other counts two power-of-two sizes (3 steps: 1/2, 1/4, 1/4).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from ..objectives import Objective
from ..sampling import MAX_STEPS, check_steps, step_inputs, step_schedule, step_starts


class ShortcutScheduler(SchedulerMixin, ConfigMixin):
    """Euler steps ``x <- x + size * v`` from noise (t = 0) to data (t = 1) for a step-size-conditioned network.

    Args:
        max_steps: M, the finest step count the network was trained for (128).
        fixed_step_size: the step-size input the network gets below M steps, whatever the step taken
            (flow matching and consistency distillation: 1/M, where they were trained; live reflow: 1);
            None: the size of the step taken (shortcut models, MeanFlow...). At M steps every step is 1/M and
            the network gets 1/M.

    :meth:`set_timesteps` fills ``timesteps`` (the start time of each step), ``step_sizes`` (the Euler
    steps, summing to 1) and ``step_size_inputs`` (what the network's ``d`` input gets); :meth:`step`
    takes one Euler step. The noise is standard normal (``init_noise_sigma`` = 1) and the network's input
    is not scaled (:meth:`scale_model_input` is the identity). Saved as ``scheduler_config.json``.
    """

    config_name = "scheduler_config.json"
    order = 1
    _compatibles: list[str] = []

    @register_to_config
    def __init__(self, max_steps: int = MAX_STEPS, fixed_step_size: float | None = None) -> None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
        if fixed_step_size is not None and not 0.0 < float(fixed_step_size) <= 1.0:
            raise ValueError(f"fixed_step_size must lie in (0, 1] or be None, got {fixed_step_size!r}")
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0)
        self.step_sizes: list[float] = []
        self.step_size_inputs = torch.empty(0)
        self._step_index: int | None = None
        self._begin_index: int | None = None

    @classmethod
    def for_objective(cls, objective: Objective) -> ShortcutScheduler:
        """The scheduler that feeds a network trained by ``objective`` the step-size inputs the package's own
        sampler feeds it (``objective.sampling_d_at``) at every step count from 1 to M; ValueError when no
        scheduler setting does."""
        m = int(objective.max_steps)
        below = objective.sampling_d_at(1)
        scheduler = cls(max_steps=m, fixed_step_size=None if below is None else float(below))
        for n in range(1, m + 1):
            sizes = step_schedule(n, m)
            if scheduler.inputs_at(n) != step_inputs(sizes, objective.sampling_d_at(n)):
                raise ValueError(f"objective {objective.name!r} feeds step-size inputs no ShortcutScheduler gives")
        return scheduler

    def inputs_at(self, steps: int) -> list[float]:
        """The step-size inputs of the network at ``steps`` steps (see the class docstring)."""
        m = self.config.max_steps
        fixed = self.config.fixed_step_size if steps < m else None
        return step_inputs(step_schedule(steps, m), fixed)

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Set the steps of a generation in ``num_inference_steps`` steps (any integer from 1 to ``max_steps``;
        ValueError otherwise)."""
        try:
            n = check_steps(num_inference_steps, self.config.max_steps)
        except ValueError:
            raise ValueError(
                f"num_inference_steps must be an integer from 1 to {self.config.max_steps}, got {num_inference_steps!r}"
            ) from None
        sizes = step_schedule(n, self.config.max_steps)
        self.num_inference_steps = n
        self.step_sizes = sizes
        self.timesteps = torch.tensor(step_starts(sizes), dtype=torch.float32, device=device)
        self.step_size_inputs = torch.tensor(self.inputs_at(n), dtype=torch.float32, device=device)
        self._step_index = None
        self._begin_index = None

    @property
    def step_index(self) -> int | None:
        """The number of the next step (None before the first :meth:`step` after :meth:`set_timesteps`)."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at step ``begin_index`` (a pipeline that skips the first steps)."""
        self._begin_index = int(begin_index)

    def index_for_timestep(self, timestep: float | torch.Tensor) -> int:
        """The number of the step that starts at ``timestep``; ValueError when none does."""
        found = torch.nonzero(self.timesteps == torch.as_tensor(timestep, device=self.timesteps.device).float())
        if len(found) != 1:
            raise ValueError(
                f"timestep {float(timestep)} is not one of this scheduler's step times; call set_timesteps"
            )
        return int(found[0, 0])

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None) -> torch.Tensor:
        """The network's input at ``timestep``: ``sample`` itself (the path is not rescaled)."""
        return sample

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor]:
        """One Euler step from ``sample`` at ``timestep`` along the velocity ``model_output``:
        ``sample + size * model_output`` (in ``sample``'s dtype), ``size`` the step's own size."""
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps before step")
        if self._step_index is None:
            self._step_index = self.index_for_timestep(timestep) if self._begin_index is None else self._begin_index
        if self._step_index >= self.num_inference_steps:
            raise ValueError(f"all {self.num_inference_steps} steps are taken; call set_timesteps to start again")
        prev = sample + self.step_sizes[self._step_index] * model_output.to(sample.dtype)
        self._step_index += 1
        return SchedulerOutput(prev_sample=prev) if return_dict else (prev,)

    def __len__(self) -> int:
        return int(self.config.max_steps)
