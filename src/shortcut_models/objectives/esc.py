"""ESC, Explicit ShortCut (Lin et al., ICLR 2026, "On the Design of One-step Diffusion via Shortcutting
Flow Paths") on the shared network.

ESC trains the average velocity over intervals with MeanFlow's identity (:mod:`.meanflow`) and changes
what goes into it. In our time (t = 0 noise, t = 1 data; the network u(x_t, t, d) is the average velocity
over [t, t + d]) a row's target is

    target = w_v + warm * d * D u,   D u = du/dx . w_v + du/dt - du/dd   (end t + d held fixed),

one forward-mode product of the target network with tangent (w_v, 1, -1) (the MeanFlow identity's
:func:`~.meanflow_identity.path_derivative`). The paper's code works in reversed time (s = 1 - t is
noise, interval [r, s] with r = 1 - t - d, its network is -u(z, 1 - s, s - r)) and differentiates along
(w_v, 0 for r, 1 for s): r fixed there is our end t + d fixed, and its target w_v - (s - r) du/ds is minus
ours. The parts, each a knob at the authors' setting (their README's ESC-B/2 command):

- times: MeanFlow's pair sampler (logit-normal, ``interval_share`` of the rows on an interval), and on
  each interval row, with probability ``terminal_share(progress)`` = (2 / pi) arccos(min(1, step /
  terminal_steps)), the interval ends at the data (d = 1 - t): every interval row at the start of
  training, none from step ``terminal_steps`` on (the authors' ``term_zero_steps`` = 20000);
- velocity w_v: the path velocity v = x1 - (1 - eps) x0, or on a share ``plugin_share`` of the rows the
  *plug-in* velocity (:func:`plugin_velocity`), the minibatch kernel estimate of the marginal velocity
  E[v | x_t] with this process's data rows as the data distribution;
- guidance in training: on conditional rows (label not dropped) with t in [cfg_t_min, cfg_t_max],
  w_v becomes omega w_v + kappa u(x_t, t, 0, y) + (1 - omega - kappa) u(x_t, t, 0, null) (two forwards of
  the target network at d = 0); omega = 1, kappa = 0 is no guidance. The window is in our time: the
  authors' [cfg_min_t, cfg_max_t] is [1 - cfg_max_t, 1 - cfg_min_t] here;
- warm: min(1, step / derivative_warmup_steps) scales the derivative term (1 when that knob is 0, the
  authors' ESC setting);
- label dropout ``class_dropout`` 0.1 (the authors' cfg-prob), the adaptive loss weight (eps 1e-3, p 1),
  the online network as target network (their tgt-decay 0).

Where this differs from the authors' code: the rows on an interval are the leading
``round(B * interval_share)`` rows of the batch (theirs: each row with that probability), as MeanFlow here;
rows with d = 0 skip the product (theirs multiply it by d = 0). Not here: their log-variance head
(``--variational-adaptive-weight``, a second network output) and class-consistent batches
(``--class-consist``, a data-loader choice that makes the plug-in estimate class-conditional).

The plug-in estimate couples the rows of a batch: it uses the data rows the calling process holds (as
the authors' per-GPU batch), so with ``plugin_share`` > 0 a run's targets depend on how many processes
share the global batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import path
from ..seeding import RowDraws
from ..validation import Float, Int, OneOf
from .base import Objective
from .batch import Batch, Network, Progress, TargetNetworks, Targets
from .knobs import knob
from .labels import dropped_labels, null_labels
from .meanflow_identity import path_derivative
from .recipe import Recipe
from .schedule import warmup
from .time_samplers import FLOW_ROW_TIMES, interval_times

WINDOW_DRAWS = 8192  # fixed draws of the time sampler that estimate the share of rows in the guidance window


def plugin_velocity(x_t: torch.Tensor, t: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """E[v | x_t] when the data are the rows of ``x1`` (equally likely): the plug-in velocity of ESC.

    Row i, at time t_i, sees data row j through the noise x0_ij = (x_t,i - t_i x1_j) / a_i, a_i =
    1 - (1 - eps) t_i, whose velocity is (x1_j - (1 - eps) x_t,i) / a_i; the rows are weighted by the
    posterior softmax_j(-|x0_ij|^2 / 2). The weights come from one product x_t x1^T (the term |x_t,i|^2 is
    the same for every j and drops out of the softmax), computed in float32 at least and outside autocast
    (the logits grow as D / a^2: in bfloat16 the weights would be noise).
    """
    work = torch.promote_types(x_t.dtype, torch.float32)
    with torch.autocast(x_t.device.type, enabled=False):
        flat_t, flat_1, t = x_t.flatten(1).to(work), x1.flatten(1).to(work), t.to(work)[:, None]
        a = 1.0 - (1.0 - path.EPS) * t
        logits = (2.0 * t * (flat_t @ flat_1.T) - t * t * flat_1.pow(2).sum(1)[None]) / (2.0 * a * a)
        x1_hat = logits.softmax(dim=1) @ flat_1
        return ((x1_hat - (1.0 - path.EPS) * flat_t) / a).to(x_t.dtype).view_as(x_t)


@dataclass
class EscRows:
    """The random choices of one ESC batch (:meth:`ESC.draw_rows`), one entry per row.

    t, d: time and step size; interval: the row is on an interval (the leading rows); terminal: its
    interval ends at the data (t + d = 1); labels: after dropout (null = num_classes); plugin: the row's
    velocity is the plug-in estimate.
    """

    t: torch.Tensor
    d: torch.Tensor
    interval: torch.Tensor
    terminal: torch.Tensor
    labels: torch.Tensor
    plugin: torch.Tensor


@dataclass(kw_only=True)
class ESC(Objective):
    """ESC: MeanFlow's identity with a terminal-time schedule, the plug-in velocity and guidance in training.

    See the module docstring for the maths and where it differs from the authors' code.
    """

    name = "esc"
    title = "ESC"
    recipe_source = (
        'Lin et al., "On the Design of One-step Diffusion via Shortcutting Flow Paths" (ICLR 2026); '
        "EDAPINENUT/ExplicitShortCut: scripts/README.md (the ESC-B/2 command), argparse_train.py "
        "(cfg-prob 0.1, tgt-decay 0: the online network), loss/esc_loss.py"
    )
    row_kinds = ("interval", "flow")
    step_input = "size"  # the interval d itself, as MeanFlow's
    schedule_knob = "terminal_steps"
    ablations = {
        "no plug-in velocity": ("plugin_share=0",),
        "no terminal-time schedule": ("terminal_steps=0",),
        "no adaptive weight": ("loss_weight=mse",),
        "uniform times": ("time_sampler=uniform",),
    }

    # the authors' ESC-B/2 command: logit-normal times, adaptive weight (eps 1e-3, p 1), online target network
    recipe: Recipe = Recipe(time_sampler="logit-normal", loss_weight="adaptive", target_network="online")
    class_dropout: float = knob(0.1, Float(0.0, 1.0), "probability of the null label on flow-matching rows")
    interval_share: float = knob(0.25, Float(0.0, 1.0), "share of rows trained on an interval (d > 0)")
    flow_row_time: str = knob(
        "smaller", OneOf(FLOW_ROW_TIMES), "time of the rows with d = 0: the smaller of two draws, or the first"
    )
    terminal_steps: int = knob(20000, Int(0), "steps until no interval is made to end at the data (0: none ever)")
    plugin_share: float = knob(0.5, Float(0.0, 1.0), "share of rows whose velocity is the minibatch plug-in estimate")
    cfg_omega: float = knob(1.0, Float(), "guidance in training: weight of the (plug-in) velocity")
    cfg_kappa: float = knob(
        0.5, Float(), "guidance in training: weight of the conditional output at d = 0 (null label: 1 - omega - kappa)"
    )
    cfg_t_min: float = knob(
        0.0, Float(0.0, 1.0), "guidance in training from this time (t = 0 noise; the authors' 1 - cfg_max_t)"
    )
    cfg_t_max: float = knob(1.0, Float(0.0, 1.0), "guidance in training up to this time (the authors' 1 - cfg_min_t)")
    derivative_warmup_steps: int = knob(0, Int(0), "steps over which the derivative term grows to full (0: none)")

    # ------------------------------------------------------------ rows and schedules
    def kind_rows(self, batch: int) -> tuple[int, ...]:
        """(rows on an interval, the leading round(B * interval_share); rows with d = 0), as MeanFlow."""
        n = round(batch * self.interval_share)
        return n, batch - n

    def terminal_share(self, progress: Progress) -> float:
        """Share of interval rows whose interval ends at the data: (2 / pi) arccos(min(1, step / terminal_steps))."""
        if self.terminal_steps == 0:
            return 0.0
        return 2.0 / math.pi * math.acos(min(1.0, progress.step / self.terminal_steps))

    @property
    def guides(self) -> bool:
        """Whether guidance in training changes anything (labels exist and (omega, kappa) != (1, 0))."""
        return self.num_classes > 0 and (self.cfg_omega, self.cfg_kappa) != (1.0, 0.0)

    # ------------------------------------------------------------ cost
    def window_share(self, batch: int) -> float:
        """Expected share of rows whose time lies in the guidance window, from fixed draws of the sampler."""
        rows = WINDOW_DRAWS
        draws = RowDraws.for_batch(rows, torch.Generator().manual_seed(0), torch.device("cpu"))
        interval_rows = round(rows * self.kind_rows(batch)[0] / batch)
        t, _, _ = interval_times(self.recipe, draws, interval_rows, self.max_steps, self.flow_row_time)
        return ((t >= self.cfg_t_min) & (t <= self.cfg_t_max)).double().mean().item()

    def passes_per_row(self, batch: int) -> tuple[float, float]:
        """One product on the interval rows (two forwards each), one forward and backward per row, plus two
        forwards (conditional and null label at d = 0) on each guided row: expected share (1 - class_dropout)
        x the share in the window. The plug-in's B x B kernel is not counted."""
        guided = (1.0 - self.class_dropout) * self.window_share(batch) if self.guides else 0.0
        return 1 + 2 * self.kind_rows(batch)[0] / batch + 2.0 * guided, 1.0

    # ------------------------------------------------------------ targets
    def build_targets(self, networks: TargetNetworks, batch: Batch, progress: Progress) -> Targets:
        """Targets for the rows :meth:`draw_rows` chooses (see :meth:`build`)."""
        rows = self.draw_rows(batch.y, batch.draws, len(batch.kinds[0]), progress)
        return self.build(networks, batch.x0, batch.x1, batch.y is not None, rows, progress)

    def draw_rows(self, y: torch.Tensor | None, draws: RowDraws, interval_rows: int, progress: Progress) -> EscRows:
        """The random choices of the rows of ``draws``, the first ``interval_rows`` of them on an interval.
        Draw order: two times per row, the terminal draw, label dropout, the plug-in draw."""
        t, d, interval = interval_times(self.recipe, draws, interval_rows, self.max_steps, self.flow_row_time)
        terminal = interval & (draws.uniform() < self.terminal_share(progress))
        d = torch.where(terminal, 1.0 - t, d)
        labels = dropped_labels(y, draws, self.class_dropout, self.num_classes)
        plugin = draws.uniform() < self.plugin_share
        return EscRows(t, d, interval, terminal, labels, plugin)

    def build(
        self,
        networks: TargetNetworks,
        x0: torch.Tensor,
        x1: torch.Tensor,
        conditional: bool,
        rows: EscRows,
        progress: Progress,
    ) -> Targets:
        """Targets for given noise, data and choices (``conditional``: the batch has labels)."""
        x_t = path.interpolate(x0, x1, rows.t)
        v = path.velocity(x0, x1)
        if self.plugin_share > 0:
            v = torch.where(path.expand_like(rows.plugin, v).bool(), plugin_velocity(x_t, rows.t, x1), v)
        guided = self.guided_rows(conditional, rows)
        built = guided | rows.interval
        net = self.recipe.target_net(networks) if bool(built.any()) else None
        if bool(guided.any()):
            v[guided] = self.guided_velocity(net, x_t[guided], rows.t[guided], v[guided], rows.labels[guided])
        target = v.clone()
        n = int(rows.interval.sum())  # the leading rows
        if n:
            du = path_derivative(net, x_t[:n], rows.t[:n], rows.d[:n], v[:n], rows.labels[:n])
            warm = warmup(progress.step, self.derivative_warmup_steps)
            target[:n] = v[:n] + warm * path.expand_like(rows.d[:n], v) * du
        target = torch.where(path.expand_like(built, v).bool(), self.recipe.clamp(target), target)
        return Targets(x_t, rows.t, rows.d, target.detach(), rows.labels, (~rows.interval).long())

    def guided_rows(self, conditional: bool, rows: EscRows) -> torch.Tensor:
        """Rows that get guidance: a label that was not dropped, and t in [cfg_t_min, cfg_t_max]."""
        if not (conditional and self.guides):
            return torch.zeros_like(rows.interval)
        window = (rows.t >= self.cfg_t_min) & (rows.t <= self.cfg_t_max)
        return window & (rows.labels != self.num_classes)

    def guided_velocity(
        self, model: Network, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """omega v + kappa u(x_t, t, 0, y) + (1 - omega - kappa) u(x_t, t, 0, null): one call on both labels."""
        null = null_labels(len(y), self.num_classes, y.device)
        zero = torch.zeros_like(t)
        out = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([zero, zero]), torch.cat([y, null]))
        cond, uncond = out.to(v.dtype).chunk(2)
        return self.cfg_omega * v + self.cfg_kappa * cond + (1.0 - self.cfg_omega - self.cfg_kappa) * uncond
