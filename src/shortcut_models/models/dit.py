"""Diffusion Transformer (DiT) predicting the velocity of a shortcut / flow-matching model.

Conventions shared with the rest of the package: the network is called as ``model(x_t, t, d, y)``
with ``x_t`` of shape [B, C, H, W], float ``t`` and ``d`` of shape [B] and int64 ``y`` of shape [B].
Time runs from t = 0 (pure noise) to t = 1 (data) and is fed unscaled; ``d`` is the step size, which
the conditioning feeds as its level ``-log2 d`` (``step_input="level"``, the default) or as d itself
(``"size"``, see :mod:`.embeddings`); ``y == num_classes`` is the null (unconditional) label. The
output has the shape of ``x_t`` and is the velocity (data minus noise direction).

Architecture: patchify (Conv2d, kernel = stride = patch), a fixed 2-D sin-cos position embedding,
``depth`` adaLN-Zero transformer blocks, a final adaLN layer with a linear head, and unpatchify.

Every layer is written once, against the operations ``ops`` of :mod:`.primitives`: on tensors it is the
forward pass (``forward``, and ``forward_modulated`` at a conditioning computed ahead by ``modulation``),
on (primal, tangent) pairs the Jacobian-vector product (``jvp``).

Split conditioning (``time_split=k``, Decoupled MeanFlow): the first k blocks are conditioned on the start
time t, the other blocks and the final layer on the end time t + d, both through the one time embedder (no
new weights), the step-size embedder held at ``split_step``. At d = 0 such a network computes exactly what
the ordinary network with the same weights computes at (t, split_step): a flow-matching DiT (whose d is
1/M) loaded into it gives its own velocity when both times are equal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .embeddings import (
    DEFAULT_STEP_INPUT,
    SPLIT_STEP,
    Conditioning,
    check_step_input,
    check_time_split,
    guidance_config,
    split_config,
)
from .primitives import PAIRS, TENSORS, Ops, Value

_FAMILY = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16)}

DIT_PRESETS: dict[str, dict] = {
    f"DiT-{size}/{patch}": {"patch_size": patch, "hidden_size": h, "depth": n, "num_heads": heads}
    for size, (h, n, heads) in _FAMILY.items()
    for patch in (2, 4, 8)
}
DIT_PRESETS.update(
    {
        # Small sizes meant for CPU runs (8x8 digits, 28x28 images) and unit tests.
        "DiT-Ti/2": {"patch_size": 2, "hidden_size": 192, "depth": 6, "num_heads": 3},
        "DiT-Digits": {"patch_size": 2, "hidden_size": 96, "depth": 4, "num_heads": 4},
        # 4 tokens of 4x4 pixels: the demo's network (why: docs/demo/tuning.md)
        "DiT-Digits/4": {"patch_size": 4, "hidden_size": 128, "depth": 4, "num_heads": 4},
        "DiT-Nano": {"patch_size": 2, "hidden_size": 64, "depth": 2, "num_heads": 2},
    }
)


def sincos_position_embedding(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sin-cos table of shape [grid * grid, dim] for row-major tokens.

    The first half of the features encodes the column of a token and the second half its row;
    each half is [sin | cos] of the coordinate times ``dim // 4`` geometric frequencies. Built with
    torch factory ops on the default device, so it also works under ``torch.device("meta")``.
    """
    if dim % 4:
        raise ValueError(f"hidden_size must be divisible by 4 for the 2-D position embedding, got {dim}")
    quarter = dim // 4
    freqs = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * freqs.reshape(1, -1)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()


LayerModulation = tuple[Value, ...]  # one layer's shifts, (1 + scale)s and gates, each [B, 1, C]


@dataclass(frozen=True)
class Modulation:
    """The conditioning of a batch as the DiT's layers use it (:meth:`DiT.modulation`): per layer, the
    blocks in order and then the final layer, its shift, 1 + scale and gate tensors, each [B, 1, C].

    Computed once, it serves several passes at the same (t, d, y), e.g. each step of a sampling
    trajectory: :meth:`rows` picks the rows of one pass out of a modulation of several.
    """

    layers: tuple[LayerModulation, ...]

    def rows(self, start: int, stop: int) -> Modulation:
        """The modulation of rows ``start`` to ``stop - 1`` (views, no copy)."""
        return Modulation(tuple(tuple(m[start:stop] for m in layer) for layer in self.layers))


def modulations(layers: nn.Sequential, c: Value, parts: int, ops: Ops) -> list[Value]:
    """The adaLN modulation SiLU -> Linear of the conditioning c [B, C], cut into ``parts`` [B, 1, C] values."""
    _, linear = layers
    return ops.per_sample(ops.linear(linear, ops.silu(c)), parts)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (on tensors through SDPA, see :mod:`.primitives`).

    ``scale`` multiplies q k^T: 1/sqrt(head_dim) normally, 1/head_dim with the authors' quirk.
    """

    def __init__(self, dim: int, num_heads: int, authors_quirks: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = 1.0 / self.head_dim if authors_quirks else 1.0 / math.sqrt(self.head_dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Value, ops: Ops = TENSORS) -> Value:
        qkv = ops.map(self.split_heads, ops.linear(self.qkv, x))
        return ops.linear(self.proj, ops.map(merge_heads, ops.attention(qkv, self.scale)))

    def split_heads(self, qkv: torch.Tensor) -> torch.Tensor:
        """[B, N, 3 C] -> q, k, v stacked as [3, B, heads, N, head_dim]."""
        b, n, _ = qkv.shape
        return qkv.reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)


def merge_heads(out: torch.Tensor) -> torch.Tensor:
    """[B, heads, N, head_dim] -> [B, N, C]."""
    b, heads, n, head_dim = out.shape
    return out.transpose(1, 2).reshape(b, n, heads * head_dim)


class DiTBlock(nn.Module):
    """Transformer block whose two sub-layers are modulated and gated by the conditioning c.

    ``mlp`` is Linear, GELU (tanh approximation), Linear; ``adaLN_modulation`` is SiLU, Linear (the
    layout of the checkpoints); the activations are applied as ``ops.gelu_tanh`` and ``ops.silu``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, authors_quirks: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads, authors_quirks)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def modulation(self, c: Value, ops: Ops = TENSORS) -> LayerModulation:
        """(shift_a, 1 + scale_a, gate_a, shift_m, 1 + scale_m, gate_m) of the conditioning c, each [B, 1, C]."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = modulations(self.adaLN_modulation, c, 6, ops)
        return shift_a, ops.one_plus(scale_a), gate_a, shift_m, ops.one_plus(scale_m), gate_m

    def forward_modulated(self, x: Value, modulation: LayerModulation, ops: Ops = TENSORS) -> Value:
        """The block on tokens x [B, N, C], modulated by :meth:`modulation`'s values."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = modulation
        x = ops.residual(x, gate_a, self.attn(ops.modulate(ops.layer_norm(self.norm1, x), shift_a, scale_a), ops))
        fc1, _, fc2 = self.mlp
        z = ops.modulate(ops.layer_norm(self.norm2, x), shift_m, scale_m)
        return ops.residual(x, gate_m, ops.linear(fc2, ops.gelu_tanh(ops.linear(fc1, z))))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.forward_modulated(x, self.modulation(c))


class FinalLayer(nn.Module):
    """adaLN (shift, scale) followed by a linear map from tokens to patch pixels."""

    def __init__(self, dim: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)

    def modulation(self, c: Value, ops: Ops = TENSORS) -> LayerModulation:
        """(shift, 1 + scale) of the conditioning c, each [B, 1, C]."""
        shift, scale = modulations(self.adaLN_modulation, c, 2, ops)
        return shift, ops.one_plus(scale)

    def forward_modulated(self, x: Value, modulation: LayerModulation, ops: Ops = TENSORS) -> Value:
        shift, scale = modulation
        return ops.linear(self.linear, ops.modulate(ops.layer_norm(self.norm, x), shift, scale))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.forward_modulated(x, self.modulation(c))


class DiT(nn.Module):
    """DiT conditioned on (t, d, y) through ``Conditioning``; returns a velocity shaped like x_t.

    ``authors_quirks=False`` (default) is the standard DiT: attention scale 1/sqrt(head_dim) and
    adaLN-Zero, i.e. every block's modulation layer starts at zero so each block is the identity.
    ``authors_quirks=True`` reproduces two details of the authors' JAX code: queries are scaled by
    1/head_dim instead of 1/sqrt(head_dim), and the block modulation layers keep their xavier init
    instead of being zeroed. In both settings the final modulation and the head are zero, so the
    output is exactly zero at initialisation.

    ``step_input``: what the step-size embedder sees, ``"level"`` (-log2 d, the authors') or ``"size"``
    (d itself, continuous at d = 0); see :mod:`.embeddings`.
    ``guidance_input=True`` adds the guidance input ``model(x, t, d, y, guidance=g)`` (see
    :mod:`.embeddings`); ``config`` names it only when True, so other networks' checkpoints are unchanged.
    ``time_split`` (None: off; else an int in [1, depth]) splits the conditioning between the start time
    (blocks before it) and the end time t + d (the rest), the step-size embedder held at ``split_step``
    (see the module docstring); ``config`` names them only when split.
    """

    def __init__(
        self,
        input_size: int,
        in_channels: int,
        patch_size: int,
        hidden_size: int,
        depth: int,
        num_heads: int,
        num_classes: int = 0,
        mlp_ratio: float = 4.0,
        authors_quirks: bool = False,
        step_input: str = DEFAULT_STEP_INPUT,
        guidance_input: bool = False,
        time_split: int | None = None,
        split_step: float = SPLIT_STEP,
    ) -> None:
        super().__init__()
        check_step_input(step_input)
        self.time_split = check_time_split(time_split, 1, depth, "DiT")
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} must be divisible by patch_size {patch_size}")
        self.config = {
            "input_size": input_size,
            "in_channels": in_channels,
            "patch_size": patch_size,
            "hidden_size": hidden_size,
            "depth": depth,
            "num_heads": num_heads,
            "num_classes": num_classes,
            "mlp_ratio": mlp_ratio,
            "authors_quirks": authors_quirks,
            "step_input": step_input,
            **guidance_config(guidance_input),
            **split_config(time_split, split_step),
        }  # rebuilds this network: DiT(**config)
        self.split_step = float(split_step)
        self.input_size = input_size
        self.in_channels = in_channels
        self.out_channels = in_channels
        self.patch_size = patch_size
        self.hidden_size = hidden_size
        self.num_classes = num_classes
        self.authors_quirks = authors_quirks
        self.guidance_input = guidance_input
        self.grid = input_size // patch_size

        self.x_embedder = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)
        self.conditioning = Conditioning(hidden_size, num_classes, step_input=step_input, guidance_input=guidance_input)
        self.register_buffer("pos_embed", sincos_position_embedding(hidden_size, self.grid)[None])
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio, authors_quirks) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    @classmethod
    def from_preset(cls, name: str, input_size: int, in_channels: int, num_classes: int = 0, **overrides) -> DiT:
        """Build a preset from ``DIT_PRESETS``; ``overrides`` replace preset fields or add options."""
        if name not in DIT_PRESETS:
            raise ValueError(f"unknown DiT preset {name!r}; valid names: {', '.join(DIT_PRESETS)}")
        config = {**DIT_PRESETS[name], **overrides}
        return cls(input_size=input_size, in_channels=in_channels, num_classes=num_classes, **config)

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """(Re)initialise parameters and the position table, e.g. after ``to_empty`` from meta."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        conv = self.x_embedder
        nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
        nn.init.zeros_(conv.bias)
        self.pos_embed.copy_(sincos_position_embedding(self.hidden_size, self.grid)[None])

        cond = self.conditioning
        nn.init.normal_(cond.y_embedder.table.weight, std=0.02)
        guided = cond.guidance_embedder.embedders() if cond.guidance_embedder is not None else ()
        for embedder in (cond.t_embedder, cond.d_embedder, *guided):
            nn.init.normal_(embedder.mlp[0].weight, std=0.02)
            nn.init.normal_(embedder.mlp[2].weight, std=0.02)

        if not self.authors_quirks:
            for block in self.blocks:
                nn.init.zeros_(block.adaLN_modulation[-1].weight)
                nn.init.zeros_(block.adaLN_modulation[-1].bias)
        final = self.final_layer
        for layer in (final.adaLN_modulation[-1], final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def num_parameters(self, trainable_only: bool = True) -> int:
        """Number of parameters (the fixed position table is a buffer and never counted)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, N, p*p*C] -> [B, C, H, W]; each token holds its patch as (row, col, channel)."""
        b, p, g, c = tokens.shape[0], self.patch_size, self.grid, self.out_channels
        x = tokens.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, g * p, g * p)

    def jvp(
        self,
        primals: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        tangents: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        guidance: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, its derivative along the tangents (dx, dt, dd)) at primals (x, t, d, y) and ``guidance``
        (no tangent): the layers of forward on (primal, tangent) pairs (:mod:`.primitives`), one pass;
        equals ``torch.func.jvp`` of forward."""
        (x, t, d, y), (dx, dt, dd) = primals, tangents
        c = self.layer_conditioning((t, dt), (d, dd), y, guidance, PAIRS)
        return self.run_layers((x, dx), lambda i, layer: layer.modulation(c(i), PAIRS), PAIRS)

    def modulation(
        self, t: torch.Tensor, d: torch.Tensor, y: torch.Tensor, guidance: torch.Tensor | None = None
    ) -> Modulation:
        """The conditioning of (t, d, y, guidance) as every layer uses it: ``forward(x, t, d, y, guidance)``
        equals ``forward_modulated(x, modulation(t, d, y, guidance))``."""
        c = self.layer_conditioning(t, d, y, guidance)
        return Modulation(tuple(layer.modulation(c(i)) for i, layer in enumerate((*self.blocks, self.final_layer))))

    def forward_modulated(self, x: torch.Tensor, modulation: Modulation) -> torch.Tensor:
        """The network on x [B, C, H, W] at a conditioning computed ahead (:meth:`modulation`)."""
        return self.run_layers(x, lambda i, layer: modulation.layers[i])

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, d: torch.Tensor, y: torch.Tensor, guidance: torch.Tensor | None = None
    ) -> torch.Tensor:
        c = self.layer_conditioning(t, d, y, guidance)
        return self.run_layers(x, lambda i, layer: layer.modulation(c(i)))

    def layer_conditioning(
        self, t: Value, d: Value, y: torch.Tensor, guidance: torch.Tensor | None, ops: Ops = TENSORS
    ) -> Callable[[int], Value]:
        """The conditioning c of layer i (the blocks, then the final layer): one c for every layer, or, split,
        the start time's before ``time_split`` and the end time's from it (:meth:`.Conditioning.split`)."""
        if self.time_split is None:
            c = self.conditioning(t, d, y, guidance, ops)
            return lambda i: c
        start, end = self.conditioning.split(t, d, y, guidance, self.split_step, ops)
        return lambda i: start if i < self.time_split else end

    def run_layers(
        self, x: Value, modulation_of: Callable[[int, nn.Module], LayerModulation], ops: Ops = TENSORS
    ) -> Value:
        """Patch embedding, the blocks and the final layer on x [B, C, H, W]; layer i (the blocks, then the
        final layer) is modulated by ``modulation_of(i, layer)``, asked just before the layer runs."""
        h = ops.map(patch_tokens, ops.conv(self.x_embedder, x))  # [B, N, C]
        h = ops.add_constant(h, self.pos_embed.to(ops.primal(h).dtype))
        for i, block in enumerate(self.blocks):
            h = block.forward_modulated(h, modulation_of(i, block), ops)
        final = self.final_layer
        return ops.map(self.unpatchify, final.forward_modulated(h, modulation_of(len(self.blocks), final), ops))


def patch_tokens(patches: torch.Tensor) -> torch.Tensor:
    """The patch embedding's [B, C, grid, grid] as tokens [B, N, C], row-major."""
    return patches.flatten(2).transpose(1, 2)
