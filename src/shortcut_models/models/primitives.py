"""The operations the DiT and the conditioning are written in, and the two ways they run.

Each layer's arithmetic (models/dit.py, models/embeddings.py) is written once, against ``ops``, one of:

- :data:`TENSORS`: values are tensors and every operation is the ordinary one. This is the forward pass
  (attention through ``F.scaled_dot_product_attention``, so PyTorch picks its fused kernels) and the
  conditioning computed ahead (``DiT.modulation``, ``DiT.forward_modulated``).
- :data:`PAIRS`: values are (primal, tangent) pairs and every operation carries the tangent too: the
  network's output and its derivative along the input's tangent in one pass (``DiT.jvp``), equal to
  ``torch.func.jvp`` of the forward pass.

Only the operations' tangent rules are written here, each once:

- linear maps (``nn.Linear``, the patch embedding's ``nn.Conv2d``): the same weights on the tangent, no bias;
- ``map``: a linear function without parameters (reshape, permute, a cast, a fixed factor) on both alike;
- LayerNorm without affine, n = (h - mean) * rstd: dn = rstd (dh - mean(dh) - n mean(n dh));
- modulation x * scale1 + shift (scale1 = 1 + scale): dx scale1 + x dscale1 + dshift;
- gated residual h + g * o: dh + dg o + g do;
- GELU and SiLU: their derivative times the tangent (PyTorch's own backward kernels);
- attention O = softmax(S) V with S = s q k^T: dS = s (dq k^T + q dk^T),
  dP = P * (dS - rowsum(P * dS)), dO = dP V + P dV (the probabilities P are formed explicitly);
- ``apply(fn, tangent, x)``: any other function, its tangent rule given beside it where it is defined
  (the conditioning's sinusoids and step level, models/embeddings.py).

Why not generic forward-mode AD for the product: on small networks it is dominated by per-operation
overhead (every operation runs its tangent rule as several more, with zero tangents built for every bias
and constant), and PyTorch's fused attention kernels have no forward-mode rule, so it falls back to the
math kernel anyway.

Tensors are [B, N, C] for tokens (N = tokens, C = hidden size) and [B, C] for the conditioning; a
modulation tensor is [B, 1, C], one row per sample applied to each of its tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Pair = tuple[torch.Tensor, torch.Tensor]  # (primal, tangent)
Value = torch.Tensor | Pair  # what a layer takes and returns: a tensor under TENSORS, a pair under PAIRS
Function = Callable[[torch.Tensor], torch.Tensor]
Tangent = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, dx) -> the derivative of a function at x along dx


class Tensors:
    """The ordinary operations on tensors: the forward pass."""

    @staticmethod
    def primal(x: torch.Tensor) -> torch.Tensor:
        return x

    @staticmethod
    def map(fn: Function, x: torch.Tensor) -> torch.Tensor:
        """``fn(x)``, fn linear and without parameters (a reshape, a permutation, a cast, a fixed factor)."""
        return fn(x)

    @staticmethod
    def apply(fn: Function, tangent: Tangent, x: torch.Tensor) -> torch.Tensor:
        """``fn(x)`` (``tangent(x, dx)`` is its derivative along dx, used by :class:`Pairs`)."""
        return fn(x)

    @staticmethod
    def linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return layer(x)

    @staticmethod
    def conv(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return layer(x)

    @staticmethod
    def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

    @staticmethod
    def add_constant(x: torch.Tensor, constant: torch.Tensor) -> torch.Tensor:
        """x + a tensor that has no tangent (a fixed table, an embedding of labels)."""
        return x + constant

    @staticmethod
    def one_plus(x: torch.Tensor) -> torch.Tensor:
        return 1 + x

    @staticmethod
    def silu(x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)

    @staticmethod
    def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")

    @staticmethod
    def layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        """LayerNorm over the last dimension, without affine parameters."""
        return norm(x)

    @staticmethod
    def per_sample(x: torch.Tensor, parts: int) -> list[torch.Tensor]:
        """[B, parts * C] cut into ``parts`` tensors [B, 1, C], each applied to every token of its sample."""
        return [m.unsqueeze(1) for m in x.chunk(parts, dim=-1)]

    @staticmethod
    def modulate(x: torch.Tensor, shift: torch.Tensor, scale1: torch.Tensor) -> torch.Tensor:
        """x * scale1 + shift, scale1 = 1 + scale per sample."""
        return x * scale1 + shift

    @staticmethod
    def residual(h: torch.Tensor, gate: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        """h + gate * branch, the gate per sample."""
        return h + gate * branch

    @staticmethod
    def attention(qkv: torch.Tensor, scale: float) -> torch.Tensor:
        """softmax(scale q k^T) v per head of q, k, v stacked as qkv [3, B, heads, N, head_dim]."""
        q, k, v = qkv
        return F.scaled_dot_product_attention(q, k, v, scale=scale)


class Pairs:
    """The same operations on (primal, tangent) pairs: the Jacobian-vector product."""

    @staticmethod
    def primal(x: Pair) -> torch.Tensor:
        return x[0]

    @staticmethod
    def map(fn: Function, x: Pair) -> Pair:
        """A linear fn goes through the tangent alike."""
        return fn(x[0]), fn(x[1])

    @staticmethod
    def apply(fn: Function, tangent: Tangent, x: Pair) -> Pair:
        """``fn(x)`` and ``tangent(x, dx)``, its derivative along dx."""
        return fn(x[0]), tangent(*x)

    @staticmethod
    def linear(layer: nn.Linear, x: Pair) -> Pair:
        return layer(x[0]), F.linear(x[1], layer.weight)

    @staticmethod
    def conv(layer: nn.Conv2d, x: Pair) -> Pair:
        """A zero-padded ``nn.Conv2d``; its tangent is the convolution of the tangent without bias."""
        tangent = F.conv2d(x[1], layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
        return layer(x[0]), tangent

    @staticmethod
    def add(a: Pair, b: Pair) -> Pair:
        return a[0] + b[0], a[1] + b[1]

    @staticmethod
    def add_constant(x: Pair, constant: torch.Tensor) -> Pair:
        return x[0] + constant, x[1]

    @staticmethod
    def one_plus(x: Pair) -> Pair:
        return 1 + x[0], x[1]

    @staticmethod
    def silu(x: Pair) -> Pair:
        return F.silu(x[0]), torch.ops.aten.silu_backward(x[1], x[0])

    @staticmethod
    def gelu_tanh(x: Pair) -> Pair:
        return F.gelu(x[0], approximate="tanh"), torch.ops.aten.gelu_backward(x[1], x[0], approximate="tanh")

    @staticmethod
    def layer_norm(norm: nn.LayerNorm, x: Pair) -> Pair:
        x, dx = x
        n, _, rstd = torch.native_layer_norm(x, x.shape[-1:], None, None, norm.eps)
        dn = (dx - dx.mean(-1, keepdim=True) - n * (n * dx).mean(-1, keepdim=True)) * rstd
        return n, dn

    @staticmethod
    def per_sample(x: Pair, parts: int) -> list[Pair]:
        chunks = (Tensors.per_sample(v, parts) for v in x)
        return list(zip(*chunks))

    @staticmethod
    def modulate(x: Pair, shift: Pair, scale1: Pair) -> Pair:
        (x, dx), (shift, dshift), (scale1, dscale1) = x, shift, scale1
        return x * scale1 + shift, dx * scale1 + x * dscale1 + dshift

    @staticmethod
    def residual(h: Pair, gate: Pair, branch: Pair) -> Pair:
        (h, dh), (g, dg), (o, do) = h, gate, branch
        return h + g * o, dh + dg * o + g * do

    @staticmethod
    def attention(qkv: Pair, scale: float) -> Pair:
        """The probabilities formed explicitly: no fused attention kernel has a forward-mode rule."""
        (q, k, v), (dq, dk, dv) = qkv
        kt = k.transpose(-2, -1)
        p = torch.softmax((q @ kt) * scale, dim=-1)
        ds = (dq @ kt + q @ dk.transpose(-2, -1)) * scale
        pds = p * ds
        dp = pds - p * pds.sum(-1, keepdim=True)
        return p @ v, dp @ v + p @ dv


Ops = type[Tensors] | type[Pairs]
TENSORS: Ops = Tensors  # values are tensors: the forward pass
PAIRS: Ops = Pairs  # values are (primal, tangent) pairs: the Jacobian-vector product
