"""Conditioning embeddings shared by every network: time t, step size d and class label y.

Every network in this package is called as ``model(x_t, t, d, y)`` with float ``t`` and ``d`` of
shape [B] and int64 ``y`` of shape [B]; ``y == num_classes`` is the null (unconditional) label.
Time is fed in [0, 1] (t = 0 noise, t = 1 data), not scaled by 1000, as in the authors' code.

What the step-size embedder sees is the network option ``step_input`` (:data:`STEP_INPUTS`):

- ``"level"`` (the default): the level ``k = -log2(d)`` (0 for one step of size 1, 7 for d = 1/128),
  as the authors' shortcut DiT feeds it. d = 0 is clamped to level ~40, so d -> 0 and d = 0 are
  far-apart inputs.
- ``"size"``: d itself, through the same sinusoidal embedder as t: continuous at d = 0, as the
  interval methods' own networks (MeanFlow and its successors) embed the interval t - r.

The public interface passes ``d`` either way.

Guidance as an input (iMF, :mod:`shortcut_models.objectives.imf`): a network built with
``guidance_input=True`` also takes ``model(x_t, t, d, y, guidance=g)``, ``g`` a float [B, 3] tensor of
one row per sample: the guidance scale w, and the interval [lo, hi] of times (t = 0 noise) where it
applies (:mod:`shortcut_models.guidance`). Three more embedders add emb(1 - 1/w), emb(lo) and emb(hi)
to the conditioning (the iMF network embeds the same three numbers, as extra tokens). Without
``guidance`` such a network is unguided: w = 1 on [0, 1]. A network built without the input raises ValueError
when given one, so a guided call never silently drops the guidance.

The embedders are written once, against the operations ``ops`` of :mod:`.primitives`: on tensors they are
the forward pass, on (primal, tangent) pairs (the DiT's ``jvp``) they also carry the derivative along the
tangents of t and d (labels and the guidance input have none).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import guidance as guide
from .primitives import TENSORS, Ops, Value

MAX_PERIOD = 10000.0  # the slowest sinusoid's period
MIN_STEP = 1e-12  # step sizes are clamped here before their level is taken (d = 0 -> level ~40)


def frequencies(dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The ``dim // 2`` geometric frequencies of :func:`sinusoidal`, from 1 down to 1 / MAX_PERIOD."""
    half = dim // 2
    return torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, device=device, dtype=dtype) / half)


def sinusoidal(x: Value, dim: int, ops: Ops = TENSORS) -> Value:
    """Sin-cos features of a scalar per row: [B] -> [B, dim] (cos half first, as in DiT); float32, or
    float64 for float64 input (derivative checks)."""
    dtype = torch.float64 if ops.primal(x).dtype == torch.float64 else torch.float32
    freqs = frequencies(dim, ops.primal(x).device, dtype)
    emb = ops.apply(cos_sin, cos_sin_tangent, ops.map(lambda s: s.to(dtype)[:, None] * freqs[None], x))
    if dim % 2:
        emb = ops.map(lambda e: torch.cat([e, torch.zeros_like(e[:, :1])], dim=-1), emb)
    return emb


def cos_sin(args: torch.Tensor) -> torch.Tensor:
    """[cos | sin] of args [B, n] -> [B, 2 n]."""
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def cos_sin_tangent(args: torch.Tensor, dargs: torch.Tensor) -> torch.Tensor:
    """The derivative of :func:`cos_sin` along dargs: [-sin | cos](args) dargs."""
    return torch.cat([-torch.sin(args) * dargs, torch.cos(args) * dargs], dim=-1)


STEP_INPUTS = ("level", "size")  # what the step-size embedder sees: -log2(d), or d itself
DEFAULT_STEP_INPUT = "level"  # the authors' choice


def check_step_input(value: object, name: str = "step_input") -> str:
    """``value`` if it is one of :data:`STEP_INPUTS`; ValueError naming ``name`` and them otherwise."""
    if value not in STEP_INPUTS:
        raise ValueError(
            f"{name} must be one of {', '.join(repr(s) for s in STEP_INPUTS)} "
            f"(the step size as -log2(d), or d itself), got {value!r}"
        )
    return str(value)


def step_level(d: torch.Tensor) -> torch.Tensor:
    """Level ``k = -log2(d)`` of a step size (d = 1 -> 0, d = 1/128 -> 7); d must be > 0."""
    return -torch.log2(d.to(torch.float64 if d.dtype == torch.float64 else torch.float32).clamp_min(MIN_STEP))


def step_level_tangent(d: torch.Tensor, dd: torch.Tensor) -> torch.Tensor:
    """The derivative of :func:`step_level` along dd: -dd / (d ln 2), 0 where d is clamped."""
    return torch.where(d > MIN_STEP, -dd / (d * math.log(2.0)), torch.zeros_like(d))


class ScalarEmbedder(nn.Module):
    """sinusoid(freq_dim) -> Linear -> SiLU -> Linear, the DiT timestep embedder."""

    def __init__(self, hidden: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, x: Value, ops: Ops = TENSORS) -> Value:
        """The embedding [B, hidden] of x [B]; ``mlp``'s SiLU is applied as ``ops.silu``."""
        first, _, second = self.mlp
        feats = ops.map(lambda f: f.to(first.weight.dtype), sinusoidal(x, self.freq_dim, ops))
        return ops.linear(second, ops.silu(ops.linear(first, feats)))


class LabelEmbedder(nn.Module):
    """A table of ``num_classes + 1`` rows; the last row is the null label used for guidance."""

    def __init__(self, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, hidden)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.table(y)


SPLIT_STEP = 1.0 / 128  # the step size a split network's step-size embedder is held at: flow matching's 1/M, M = 128
SPLIT_SHARE = 0.7  # the default share of the depth fed the start time (Decoupled MeanFlow's 20 of 28 DiT-XL blocks)


def check_time_split(time_split: object, low: int, high: int, network: str) -> int | None:
    """``time_split`` (None: the network is not split) if it is an int in [low, high]; ValueError otherwise."""
    if time_split is None:
        return None
    if isinstance(time_split, bool) or not isinstance(time_split, int) or not low <= time_split <= high:
        raise ValueError(
            f"time_split of this {network} must be an integer in [{low}, {high}] (the layers fed the start "
            f"time, the rest the end time; decoupled-meanflow's decoupled_depth), got {time_split!r}"
        )
    return time_split


def default_time_split(depth: int, low: int) -> int:
    """The default split of ``depth`` blocks: round(0.7 depth) (the authors' 20 of 28), kept in [low, depth - 1]
    so that the start time and the end time each condition at least one layer's worth of blocks."""
    return max(low, min(round(SPLIT_SHARE * depth), depth - 1))


def split_config(time_split: int | None, split_step: float) -> dict[str, int | float]:
    """The ``config`` entries of a split network (none for an ordinary one, so its checkpoints are unchanged)."""
    return {} if time_split is None else {"time_split": time_split, "split_step": split_step}


def guidance_config(guidance_input: bool) -> dict[str, bool]:
    """The ``config`` entry of a network's guidance input: ``{"guidance_input": True}`` only when it has one,
    so the configs (and checkpoints) of networks without it are those of the versions before it."""
    return {"guidance_input": True} if guidance_input else {}


class GuidanceEmbedder(nn.Module):
    """emb(1 - 1/w) + emb(lo) + emb(hi) of a guidance tensor [B, 3] (w >= 1, so 1 - 1/w lies in [0, 1))."""

    def __init__(self, hidden: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.scale_embedder = ScalarEmbedder(hidden, freq_dim)
        self.lo_embedder = ScalarEmbedder(hidden, freq_dim)
        self.hi_embedder = ScalarEmbedder(hidden, freq_dim)

    def embedders(self) -> tuple[ScalarEmbedder, ...]:
        return self.scale_embedder, self.lo_embedder, self.hi_embedder

    def forward(self, guidance: torch.Tensor) -> torch.Tensor:
        scale, lo, hi = guidance.unbind(dim=1)
        return self.scale_embedder(1 - 1 / scale) + self.lo_embedder(lo) + self.hi_embedder(hi)


class Conditioning(nn.Module):
    """c = emb_t(t) + emb_d(s(d)) + emb_y(y): separate t and d embedders and one label table, where
    s(d) is the level -log2(d) (``step_input="level"``) or d itself (``"size"``); with
    ``guidance_input``, + the guidance embedding (:class:`GuidanceEmbedder`)."""

    def __init__(
        self,
        hidden: int,
        num_classes: int,
        freq_dim: int = 256,
        step_input: str = DEFAULT_STEP_INPUT,
        guidance_input: bool = False,
    ) -> None:
        super().__init__()
        self.step_input = check_step_input(step_input)
        self.t_embedder = ScalarEmbedder(hidden, freq_dim)
        self.d_embedder = ScalarEmbedder(hidden, freq_dim)
        self.y_embedder = LabelEmbedder(num_classes, hidden)
        self.guidance_embedder = GuidanceEmbedder(hidden, freq_dim) if guidance_input else None

    def forward(
        self, t: Value, d: Value, y: torch.Tensor, guidance: torch.Tensor | None = None, ops: Ops = TENSORS
    ) -> Value:
        """c [B, hidden]; under ``PAIRS`` t and d are (value, tangent) pairs, and y and guidance have none."""
        step = ops.apply(step_level, step_level_tangent, d) if self.step_input == "level" else d
        c = ops.add_constant(ops.add(self.t_embedder(t, ops), self.d_embedder(step, ops)), self.y_embedder(y))
        return self.with_guidance(c, guidance, ops)

    def split(
        self,
        t: Value,
        d: Value,
        y: torch.Tensor,
        guidance: torch.Tensor | None,
        split_step: float,
        ops: Ops = TENSORS,
    ) -> tuple[Value, Value]:
        """(c_start, c_end) of a split network (Decoupled MeanFlow): the conditioning at the start time t and at
        the end time t + d, both through this one time embedder, with the step-size embedder held at
        ``split_step`` (no tangent). At d = 0 both are the conditioning of an ordinary network at (t, split_step)."""
        held = ops.add_constant(ops.map(torch.zeros_like, d), torch.full_like(ops.primal(d), split_step))
        return self(t, held, y, guidance, ops), self(ops.add(t, d), held, y, guidance, ops)

    def with_guidance(self, c: Value, guidance: torch.Tensor | None, ops: Ops = TENSORS) -> Value:
        """``c`` plus the guidance embedding (none given: w = 1 on [0, 1]); ValueError when this conditioning
        has no guidance input and one is given, or the guidance is not [B, 3]."""
        if self.guidance_embedder is None:
            if guidance is not None:
                raise ValueError(
                    "this network was built without the guidance input (guidance_input=False); "
                    "call it without guidance=, or build it with guidance_input=True"
                )
            return c
        rows, device = ops.primal(c).shape[0], ops.primal(c).device
        if guidance is None:
            guidance = guide.none(rows, device)
        if guidance.shape != (rows, len(guide.COLUMNS)):
            raise ValueError(f"guidance must have shape [{rows}, 3] (scale, lo, hi), got {tuple(guidance.shape)}")
        return ops.add_constant(c, self.guidance_embedder(guidance))
