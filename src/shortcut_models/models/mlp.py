"""A residual MLP for vector data (2-D toys), conditioned on time, step size and label.

Called as ``model(x_t, t, d, y)``: x_t [B, D], t and d [B] floats (t = 0 noise, t = 1 data, d the step
size), y [B] int64 with ``num_classes`` as the null label. ``step_input`` says what the step-size
embedder sees: the level -log2 d ("level", the default) or d itself ("size"; see :mod:`.embeddings`). Each block is
``h + W2 silu(W1 (LN(h) (1 + scale) + shift))`` with (shift, scale) from the conditioning vector.
The output layer is zero-initialised, so the network predicts zero velocity at initialisation.
``guidance_input=True`` adds the optional guidance input ``guidance=`` (see :mod:`.embeddings`).
``time_split=k`` (Decoupled MeanFlow; None: off) feeds the start time t to the input layer and the first k
blocks, the end time t + d to the others, both through the one time embedder, the step-size embedder held at
``split_step``; k lies in [0, depth - 1] (the output layer has no conditioning, so one block at least must see
the end time). At d = 0 it computes what the ordinary MLP computes at (t, split_step).
"""

from __future__ import annotations

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

DEFAULT_DEPTH = 4


class MLPBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.modulation = nn.Linear(width, 2 * width)
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(c).chunk(2, dim=-1)
        z = self.norm(h) * (1 + scale) + shift
        return h + self.fc2(torch.nn.functional.silu(self.fc1(z)))


class MLP(nn.Module):
    """Residual MLP velocity network for [B, dim] data."""

    def __init__(
        self,
        dim: int = 2,
        width: int = 256,
        depth: int = DEFAULT_DEPTH,
        num_classes: int = 0,
        freq_dim: int = 128,
        step_input: str = DEFAULT_STEP_INPUT,
        guidance_input: bool = False,
        time_split: int | None = None,
        split_step: float = SPLIT_STEP,
    ) -> None:
        super().__init__()
        if dim < 1 or width < 1 or depth < 1:
            raise ValueError(f"MLP needs dim, width and depth >= 1, got {dim}, {width}, {depth}")
        check_step_input(step_input)
        self.time_split = check_time_split(time_split, 0, depth - 1, "MLP")
        self.split_step = float(split_step)
        self.config = {
            "dim": dim,
            "width": width,
            "depth": depth,
            "num_classes": num_classes,
            "freq_dim": freq_dim,
            "step_input": step_input,
            **guidance_config(guidance_input),
            **split_config(time_split, split_step),
        }  # rebuilds this network: MLP(**config)
        self.dim = dim
        self.num_classes = num_classes
        self.guidance_input = guidance_input
        self.cond = Conditioning(width, num_classes, freq_dim, step_input, guidance_input)
        self.cond_act = nn.SiLU()
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(MLPBlock(width) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, d: torch.Tensor, y: torch.Tensor, guidance: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.time_split is None:
            start = end = self.cond_act(self.cond(t, d, y, guidance))
        else:
            start, end = (self.cond_act(c) for c in self.cond.split(t, d, y, guidance, self.split_step))
        h = self.inp(x) + start
        for i, block in enumerate(self.blocks):
            h = block(h, start if self.time_split is None or i < self.time_split else end)
        return self.out(self.out_norm(h))
