"""Live reflow, the baseline of the paper's Table 1 as in the authors' code.

Flow matching on most rows, plus B // bootstrap_every *reflow* rows (the first rows, kind 0) that teach the network the one-step jump (d = 1) along the straight line
between a noise vector and where the network itself currently takes it:

1. From noise x0 at t = 0, 8 Euler steps of 1/8 with the network of ``target_network`` (the online
   network, as the authors') at the flow level d = 1/M
   (null labels; with ``cfg_scale`` != 0 and labels, guided: v_u + w (v_c - v_u)) give x1_hat.
2. The row is the flow-matching row of the pair (x0, x1_hat): t from the time sampler (default
   i/M with i uniform in {0, ..., M - 1}), x_t = (1 - (1 - eps) t) x0 + t x1_hat, target x1_hat - x0,
   d = 1, true labels.

Flow rows are flow matching's (:func:`~.flow_matching.flow_rows`: t from the time sampler, d = 1/M,
label dropout). Row i of
the targets is built from data row i (the reflow rows ignore their data). The network is sampled
with d = 1 as its step-size input below M steps and with d = 1/M at M steps, as in the authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import path
from ..validation import Float, Int
from .base import Objective, leading_rows
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .fixed_conditioning import calls_at_times
from .flow_matching import flow_rows
from .knobs import knob
from .labels import class_labels, null_labels
from .recipe import LOGIT_NORMAL_TIMES, Recipe
from .time_samplers import times

EULER_STEPS = 8  # the teacher's steps from noise to data, as in the authors' code


@dataclass(kw_only=True)
class LiveReflow(Objective):
    """Live reflow: flow matching plus one-step rows to the network's own 8-step samples.

    See the module docstring for the reflow rows (the authors' code).
    """

    name = "live-reflow"
    title = "live reflow"
    recipe_source = (
        "kvfrans/shortcut-models: baselines/targets_livereflow.py (the shortcut paper's baseline: the online "
        "network, call_model, takes the 8 steps; its label dropout 0.1 is named here by the presets with labels)"
    )
    row_kinds = ("reflow", "flow")
    ablations = {
        "logit-normal times": LOGIT_NORMAL_TIMES,
        "adaptive weight": ("loss_weight=adaptive",),
    }

    # grid times, mean squared error; the online network takes the 8 steps (the authors')
    recipe: Recipe = Recipe(target_network="online")
    class_dropout: float = knob(0.0, Float(0.0, 1.0), "probability of the null label on flow-matching rows")
    bootstrap_every: int = knob(8, Int(1), "one reflow row in this many (authors' code 8)")
    cfg_scale: float = knob(0.0, Float(), "guidance weight of the 8-step samples (0: unguided)")

    @property
    def sampling_d(self) -> float | None:
        """The reflow rows train the one-step jump at d = 1: the sampler feeds d = 1 (below M steps)."""
        return 1.0

    def sampling_d_at(self, steps: int) -> float | None:
        """d = 1 below M steps, the flow level 1/M at M steps (as the authors' evaluation)."""
        return 1.0 / self.max_steps if steps >= self.max_steps else 1.0

    def kind_rows(self, batch: int) -> tuple[int, ...]:
        """(reflow rows B // bootstrap_every, at least one; flow rows)."""
        n = leading_rows(batch, self.bootstrap_every, "reflow")
        return n, batch - n

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """Eight teacher forwards on the reflow share f, then one forward and backward per row."""
        return 1 + EULER_STEPS * self.kind_rows(batch)[0] / batch, 1.0

    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Flow rows, then the reflow rows overwrite the first ones. Draw order after the noise: flow
        times, label dropout, reflow times."""
        reflow = batch.kinds[0]
        nr = len(reflow)
        tg = flow_rows(batch, self.recipe, self.max_steps, self.class_dropout, self.num_classes, kind=1)
        t = times(self.recipe, reflow, self.max_steps)
        if nr == 0:
            return tg
        labels = class_labels(None if batch.y is None else batch.y[:nr], nr, self.num_classes, batch.device)
        x_t, v = self.reflow_rows(self.recipe.target_net(networks), batch.x0[:nr], t, labels)
        tg.x_t[:nr], tg.t[:nr], tg.d[:nr], tg.v[:nr], tg.y[:nr], tg.kind[:nr] = x_t, t, torch.ones_like(t), v, labels, 0
        return tg

    def reflow_rows(
        self, teacher: Network, x0: torch.Tensor, t: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, target) of reflow rows from noise ``x0``, times ``t`` and labels ``y``."""
        n = x0.shape[0]
        null = null_labels(n, self.num_classes, x0.device)
        guided = self.cfg_scale != 0 and self.num_classes > 0
        d = torch.full((2 * n if guided else n,), 1.0 / self.max_steps, device=x0.device)
        steps = calls_at_times(
            teacher, [i / EULER_STEPS for i in range(EULER_STEPS)], d, torch.cat([y, null]) if guided else null
        )
        x = x0
        for step in steps:
            if guided:
                v_c, v_u = step(torch.cat([x, x])).to(x0.dtype).chunk(2)
                v = v_u + self.cfg_scale * (v_c - v_u)
            else:
                v = step(x).to(x0.dtype)
            x = x + v / EULER_STEPS
        return path.interpolate(x0, x, t), self.recipe.clamp(x - x0)
