"""The DiT's forward pass carrying a tangent: its output and its Jacobian-vector product in one pass.

``dit_jvp(model, (x, t, d, y), (dx, dt, dd))`` returns ``(model(x, t, d, y), J . (dx, dt, dd))``, the
directional derivative of the output along the tangent (labels have none). It equals
``torch.func.jvp`` of the forward pass, and is what objectives that need the derivative of the network
(MeanFlow and the other interval methods) call on a DiT.

Why not generic forward-mode AD: on small networks it is dominated by per-operation overhead (every
operation runs its tangent rule as several more, with zero tangents built for every bias and constant),
and PyTorch's fused attention kernels have no forward-mode rule, so it falls back to the math kernel
anyway. Here every layer's tangent is written out once:

- linear maps (the patch embedding, every ``nn.Linear``): the same weights on the tangent, no bias;
- LayerNorm without affine, n = (h - mean) * rstd: dn = rstd (dh - mean(dh) - n mean(n dh));
- modulation x (1 + scale) + shift: dx (1 + scale) + x dscale + dshift;
- GELU and SiLU: their derivative times the tangent (PyTorch's own backward kernels);
- attention O = softmax(S) V with S = s q k^T: dS = s (dq k^T + q dk^T),
  dP = P * (dS - rowsum(P * dS)), dO = dP V + P dV (the probabilities P are formed explicitly);
- the conditioning: its own ``jvp`` beside its forward (models/embeddings.py).

Tensors are [B, N, C] for tokens (N = tokens, C = hidden size) and [B, C] for the conditioning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .dit import DiT, DiTBlock, FinalLayer, SelfAttention

Pair = tuple[torch.Tensor, torch.Tensor]  # (primal, tangent)


def linear(layer: nn.Linear, x: torch.Tensor, dx: torch.Tensor) -> Pair:
    """A linear layer and its tangent (the weights only: the bias is a constant)."""
    return layer(x), F.linear(dx, layer.weight)


def silu(x: torch.Tensor, dx: torch.Tensor) -> Pair:
    return F.silu(x), torch.ops.aten.silu_backward(dx, x)


def gelu_tanh(x: torch.Tensor, dx: torch.Tensor) -> Pair:
    return F.gelu(x, approximate="tanh"), torch.ops.aten.gelu_backward(dx, x, approximate="tanh")


def layer_norm(x: torch.Tensor, dx: torch.Tensor, eps: float) -> Pair:
    """LayerNorm over the last dimension without affine parameters, and its tangent."""
    n, _, rstd = torch.native_layer_norm(x, x.shape[-1:], None, None, eps)
    dn = (dx - dx.mean(-1, keepdim=True) - n * (n * dx).mean(-1, keepdim=True)) * rstd
    return n, dn


def modulate(x: Pair, shift: Pair, scale: Pair) -> Pair:
    """x (1 + scale) + shift per sample (shift, scale: [B, C]) and its tangent."""
    (x, dx), (shift, dshift), (scale, dscale) = x, shift, scale
    scale1 = 1 + scale.unsqueeze(1)
    return x * scale1 + shift.unsqueeze(1), dx * scale1 + x * dscale.unsqueeze(1) + dshift.unsqueeze(1)


def modulation(layers: nn.Sequential, c: Pair, parts: int) -> list[Pair]:
    """The adaLN modulation SiLU -> Linear of the conditioning, cut into ``parts`` (primal, tangent) pairs."""
    out, dout = linear(layers[1], *silu(*c))
    return list(zip(out.chunk(parts, dim=-1), dout.chunk(parts, dim=-1)))


def attention(attn: SelfAttention, x: torch.Tensor, dx: torch.Tensor) -> Pair:
    """Multi-head self-attention and its tangent, probabilities formed explicitly."""
    b, n, c = x.shape

    def heads(qkv: torch.Tensor) -> torch.Tensor:
        return qkv.reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)

    qkv, dqkv = linear(attn.qkv, x, dx)
    (q, k, v), (dq, dk, dv) = heads(qkv), heads(dqkv)
    kt = k.transpose(-2, -1)
    p = torch.softmax((q @ kt) * attn.scale, dim=-1)
    ds = (dq @ kt + q @ dk.transpose(-2, -1)) * attn.scale
    pds = p * ds
    dp = pds - p * pds.sum(-1, keepdim=True)
    out, dout = p @ v, dp @ v + p @ dv

    def merge(o: torch.Tensor) -> torch.Tensor:
        return o.transpose(1, 2).reshape(b, n, c)

    return linear(attn.proj, merge(out), merge(dout))


def block(blk: DiTBlock, h: Pair, c: Pair) -> Pair:
    """One adaLN-Zero transformer block and its tangent."""
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = modulation(blk.adaLN_modulation, c, 6)
    h = residual(h, gate_a, attention(blk.attn, *modulate(layer_norm(*h, blk.norm1.eps), shift_a, scale_a)))
    z = modulate(layer_norm(*h, blk.norm2.eps), shift_m, scale_m)
    fc1, _, fc2 = blk.mlp
    return residual(h, gate_m, linear(fc2, *gelu_tanh(*linear(fc1, *z))))


def residual(h: Pair, gate: Pair, branch: Pair) -> Pair:
    """h + gate * branch (gate per sample) and its tangent."""
    (h, dh), (g, dg), (o, do) = h, gate, branch
    g, dg = g.unsqueeze(1), dg.unsqueeze(1)
    return h + g * o, dh + dg * o + g * do


def final_layer(layer: FinalLayer, h: Pair, c: Pair) -> Pair:
    shift, scale = modulation(layer.adaLN_modulation, c, 2)
    return linear(layer.linear, *modulate(layer_norm(*h, layer.norm.eps), shift, scale))


def dit_jvp(
    model: DiT,
    primals: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    tangents: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    guidance: torch.Tensor | None = None,
) -> Pair:
    """(model(x, t, d, y, guidance), its derivative along (dx, dt, dd)) of a DiT; primals (x, t, d, y),
    tangents (dx, dt, dd); the guidance input (networks built with it) has no tangent."""
    x, t, d, y = primals
    dx, dt, dd = tangents
    emb = model.x_embedder
    h = emb(x).flatten(2).transpose(1, 2)
    h = h + model.pos_embed.to(h.dtype)
    dh = F.conv2d(dx, emb.weight, None, emb.stride).flatten(2).transpose(1, 2)
    c = model.conditioning.jvp(t, dt, d, dd, y, guidance)
    pair = (h, dh)
    for blk in model.blocks:
        pair = block(blk, pair, c)
    out, dout = final_layer(model.final_layer, pair, c)
    return model.unpatchify(out), model.unpatchify(dout)
