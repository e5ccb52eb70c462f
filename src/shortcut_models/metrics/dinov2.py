"""FD-DINOv2 features: the CLS token of a DINOv2 ViT (Oquab et al. 2023) after its final LayerNorm.

The network is written here (plain torch) so that it loads the official checkpoint files from a local
path: ``dinov2_vit{s,b,l,g}14_pretrain.pth`` (and the ``*_reg4_pretrain.pth`` variants with register
tokens), plain state dicts with the keys of the official ``DinoVisionTransformer``. torch-fidelity's
DINOv2 extractor goes through ``torch.hub`` (a download, and torchvision) and refuses a local file.

The network, as the official code computes it in inference:

- patches: a 14x14 convolution with stride 14 (``patch_embed.proj``), one token per patch, row by row;
- tokens: ``[cls_token, patches] + pos_embed``, then the register tokens (``register_tokens``, if any)
  inserted after the CLS token, without positional embeddings;
- ``depth`` pre-norm blocks ``x += ls1 * attn(norm1(x)); x += ls2 * mlp(norm2(x))`` with LayerScale
  (``ls1.gamma``, ``ls2.gamma``), multi-head self-attention of head dimension 64 (``attn.qkv`` with
  bias, ``attn.proj``) and an MLP: ``fc2(gelu(fc1 x))`` (exact GELU), or for ViT-g the SwiGLU
  ``w3(silu(a) * b)`` with ``[a, b] = w12 x`` split in two halves;
- the output: ``norm`` (LayerNorm, eps 1e-6, as every LayerNorm here) of the CLS token.

Positional embeddings for another grid (:func:`interpolate_pos_embed`). The checkpoints store a 37x37
grid (518-pixel images); at 224 pixels the grid is 16x16. The official ``interpolate_pos_encoding``
(dinov2/models/vision_transformer.py) returns ``pos_embed`` unchanged when the number of patches equals
the stored one and the input is square (height == width in pixels); otherwise it takes the stored
patch embeddings in float32 as an M x M image of D channels and calls ``torch.nn.functional.interpolate``
with ``mode="bicubic"``, ``align_corners=False``, ``antialias=False`` and
``scale_factor=((rows + 0.1) / M, (cols + 0.1) / M)``, where ``rows = height // 14`` and
``cols = width // 14`` (``interpolate_offset = 0.1``, a "kludge" kept for backward compatibility; older
versions wrote ``w0 + 0.1`` inline). The output has ``floor(M * (rows + 0.1) / M) = rows`` rows, but
because a scale factor is given, PyTorch maps output pixel i to the source coordinate
``(i + 0.5) * M / (rows + 0.1) - 0.5``, not ``(i + 0.5) * M / rows - 0.5`` as ``size=(rows, cols)``
would (Hugging Face transformers' Dinov2Model uses ``size``, so its numbers differ slightly). The CLS
positional embedding is kept, and the result is cast back to the tokens' dtype. This module makes the
same call.

Preprocessing (:func:`dinov2_input`, as torch-fidelity's ``FeatureExtractorDinoV2``): 8-bit pixels,
resized to 224x224 by TensorFlow-1-style bilinear interpolation (``align_corners=False``: output pixel i
reads source coordinate ``i * in / out``, no half-pixel offset; torch-fidelity's
``interpolate_bilinear_2d_like_tensorflow1x``), then ``(p - 255 mean) / (255 std)`` with ImageNet's mean
and standard deviation.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..images import to_uint8_rgb
from .inception import read_state_dict

__all__ = [
    "OFFICIAL_WEIGHTS",
    "DinoV2Architecture",
    "DinoV2Features",
    "DinoV2ViT",
    "dinov2_input",
    "interpolate_pos_embed",
    "random_state_dict",
    "resize_bilinear_tf1",
]

OFFICIAL_WEIGHTS = "dinov2_vitl14_pretrain.pth"  # ViT-L/14, 1024-d: torch-fidelity's fd-dinov2-vit-l-14 network
INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEAD_DIM = 64
LAYER_NORM_EPS = 1e-6
INTERPOLATE_OFFSET = 0.1
_TOP_KEYS = ("cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias")
_BLOCK_KEYS = ("norm1", "attn.qkv", "attn.proj", "norm2")  # each with .weight and .bias
_MLP_KEYS = {"gelu": ("mlp.fc1", "mlp.fc2"), "swiglu": ("mlp.w12", "mlp.w3")}


def resize_bilinear_tf1(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize of float images [N, C, H, W] as TensorFlow 1.x's ``resize_bilinear`` with
    ``align_corners=False``: output pixel i reads source coordinate ``i * in / out`` (float32), between
    source pixels ``floor`` and ``floor + 1`` (clamped to the last). Columns first, then rows, as
    torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x`` (its exact "slow" method)."""

    def grid(size_in: int, size_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = torch.tensor(size_in / size_out, dtype=torch.float32)
        source = torch.arange(size_out, dtype=torch.float32, device=x.device) * scale.to(x.device)
        low = source.long()
        return low, (low + 1).clamp_max(size_in - 1), source - low.float()

    x_low, x_high, dx = grid(x.shape[3], width)
    y_low, y_high, dy = grid(x.shape[2], height)
    left, right = x[:, :, :, x_low], x[:, :, :, x_high]
    rows = left + (right - left) * dx.view(1, 1, 1, width)
    top, bottom = rows[:, :, y_low, :], rows[:, :, y_high, :]
    return top + (bottom - top) * dy.view(1, 1, height, 1)


def dinov2_input(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 RGB pixels [N, 3, H, W] -> the network's float32 input [N, 3, 224, 224]: TF1-style bilinear
    resize to 224x224, then ``(p - 255 mean) / (255 std)`` per channel (ImageNet statistics)."""
    x = resize_bilinear_tf1(pixels.to(torch.float32), INPUT_SIZE, INPUT_SIZE)
    mean = torch.tensor([255 * m for m in IMAGENET_MEAN], dtype=torch.float32, device=x.device)
    std = torch.tensor([255 * s for s in IMAGENET_STD], dtype=torch.float32, device=x.device)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def interpolate_pos_embed(pos_embed: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Positional embeddings [1, 1 + M*M, D] of a stored M x M grid for a rows x cols grid, as the official
    DINOv2 code computes them when the grid differs (module docstring): bicubic, float32, no antialias,
    ``scale_factor = ((rows + 0.1) / M, (cols + 0.1) / M)``; the CLS entry is kept."""
    side = math.isqrt(pos_embed.shape[1] - 1)
    dim = pos_embed.shape[2]
    stored = pos_embed.to(torch.float32)
    patches = stored[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    scale = (float(rows + INTERPOLATE_OFFSET) / side, float(cols + INTERPOLATE_OFFSET) / side)
    patches = F.interpolate(patches, scale_factor=scale, mode="bicubic", align_corners=False, antialias=False)
    if tuple(patches.shape[-2:]) != (rows, cols):  # cannot happen for grids below ~10^6 patches a side
        raise RuntimeError(f"interpolated grid {tuple(patches.shape[-2:])} is not {rows}x{cols}")
    patches = patches.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
    return torch.cat([stored[:, :1], patches], dim=1).to(pos_embed.dtype)


@dataclass(frozen=True)
class DinoV2Architecture:
    """The sizes of a DINOv2 ViT, read from its state dict (:meth:`from_state_dict`)."""

    width: int  # D: 384 (ViT-S), 768 (B), 1024 (L), 1536 (g)
    depth: int
    patch: int  # 14
    grid: int  # side of the stored positional-embedding grid (37 in the official files)
    mlp: str  # "gelu" (fc1/fc2) or "swiglu" (w12/w3, ViT-g)
    hidden: int  # MLP hidden width
    registers: int = 0
    layerscale: bool = True

    @property
    def heads(self) -> int:
        return self.width // HEAD_DIM

    @classmethod
    def from_state_dict(cls, state: dict) -> DinoV2Architecture:
        """Infer the sizes; a ValueError names what is missing or wrong."""
        if not isinstance(state, dict):
            raise ValueError(f"not a state dict of tensors but a {type(state).__name__}")
        other = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
        if other is not None:
            kind = type(state[other]).__name__
            raise ValueError(f"not a DINOv2 ViT state dict: {other!r} holds a {kind}, not a tensor")
        missing = [k for k in _TOP_KEYS if k not in state]
        if missing:
            found = ", ".join(sorted(state)[:5]) or "nothing"
            raise ValueError(
                f"not a DINOv2 ViT state dict: missing {', '.join(missing)} (found {found}"
                f"{', ...' if len(state) > 5 else ''})"
            )
        width = state["cls_token"].shape[-1]
        if width % HEAD_DIM:
            raise ValueError(f"cls_token width {width} is not a multiple of the head dimension {HEAD_DIM}")
        conv = state["patch_embed.proj.weight"]
        if conv.ndim != 4 or conv.shape[:2] != (width, 3) or conv.shape[2] != conv.shape[3]:
            raise ValueError(f"patch_embed.proj.weight has shape {tuple(conv.shape)}, not [{width}, 3, P, P]")
        positions = state["pos_embed"].shape[1] - 1 if state["pos_embed"].ndim == 3 else -1
        grid = math.isqrt(max(positions, 0))
        if positions < 1 or grid * grid != positions:
            raise ValueError(f"pos_embed has shape {tuple(state['pos_embed'].shape)}: not [1, 1 + M*M, D]")
        indices = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
        if not indices:
            raise ValueError("not a DINOv2 ViT state dict: no blocks.N.* entries")
        depth = max(indices) + 1
        mlp = "swiglu" if "blocks.0.mlp.w12.weight" in state else "gelu"
        layerscale = "blocks.0.ls1.gamma" in state
        expected = set(_TOP_KEYS) | {"mask_token"} | ({"register_tokens"} if "register_tokens" in state else set())
        for i in range(depth):
            layers = [*_BLOCK_KEYS, *_MLP_KEYS[mlp]]
            expected |= {f"blocks.{i}.{layer}.{p}" for layer in layers for p in ("weight", "bias")}
            if layerscale:
                expected |= {f"blocks.{i}.ls1.gamma", f"blocks.{i}.ls2.gamma"}
        missing = sorted(expected - set(state) - {"mask_token"})
        if missing:
            raise ValueError(
                f"not a DINOv2 ViT state dict: missing {', '.join(missing[:4])}" + (", ..." * (len(missing) > 4))
            )
        unexpected = sorted(set(state) - expected)
        if unexpected:
            raise ValueError(
                f"unexpected entries for a DINOv2 ViT: {', '.join(unexpected[:4])}" + (", ..." * (len(unexpected) > 4))
            )
        first = "blocks.0.mlp.w3.weight" if mlp == "swiglu" else "blocks.0.mlp.fc1.weight"
        hidden = state[first].shape[1 if mlp == "swiglu" else 0]
        registers = state["register_tokens"].shape[1] if "register_tokens" in state else 0
        return cls(width, depth, conv.shape[2], grid, mlp, hidden, registers, layerscale)


class _LayerScale(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(64)) v
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(width, 2 * hidden)
        self.w3 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)


class _Block(nn.Module):
    def __init__(self, arch: DinoV2Architecture) -> None:
        super().__init__()
        width = arch.width
        self.norm1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.attn = _Attention(width, arch.heads)
        self.ls1 = _LayerScale(width) if arch.layerscale else nn.Identity()
        self.norm2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = (_SwiGLU if arch.mlp == "swiglu" else _Mlp)(width, arch.hidden)
        self.ls2 = _LayerScale(width) if arch.layerscale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2ViT(nn.Module):
    """A DINOv2 ViT with the official parameter names; ``forward`` gives the normalised CLS token [N, D].

    Build it with :meth:`from_state_dict` (sizes inferred, weights loaded strictly; ``mask_token``,
    used only in training, is ignored)."""

    def __init__(self, arch: DinoV2Architecture) -> None:
        super().__init__()
        self.arch = arch
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, arch.width, arch.patch, stride=arch.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, arch.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + arch.grid**2, arch.width))
        self.register_tokens = nn.Parameter(torch.zeros(1, arch.registers, arch.width)) if arch.registers else None
        self.blocks = nn.ModuleList(_Block(arch) for _ in range(arch.depth))
        self.norm = nn.LayerNorm(arch.width, eps=LAYER_NORM_EPS)

    @classmethod
    def from_state_dict(cls, state: dict) -> DinoV2ViT:
        network = cls(DinoV2Architecture.from_state_dict(state))
        weights = {k: v for k, v in state.items() if k != "mask_token"}
        try:
            network.load_state_dict(weights, strict=True)
        except RuntimeError as exc:  # a shape that does not fit the inferred sizes
            detail = " ".join(str(exc).split())
            raise ValueError(f"the tensors do not fit a DINOv2 ViT: {detail[:300]}") from None
        return network

    def position_embedding(self, height: int, width: int) -> torch.Tensor:
        """[1, 1 + patches, D] for an input of height x width pixels (the official rule: stored when the
        patch count is the stored one and the input square, else :func:`interpolate_pos_embed`)."""
        rows, cols = height // self.arch.patch, width // self.arch.patch
        if rows * cols == self.arch.grid**2 and height == width:
            return self.pos_embed
        return interpolate_pos_embed(self.pos_embed, rows, cols)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input [N, 3, H, W] (H, W multiples of the patch size) -> CLS features [N, D]."""
        batch, _, height, width = x.shape
        if height % self.arch.patch or width % self.arch.patch:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {self.arch.patch}")
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(height, width)
        if self.register_tokens is not None:
            tokens = torch.cat([tokens[:, :1], self.register_tokens.expand(batch, -1, -1), tokens[:, 1:]], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens[:, 0])  # LayerNorm acts per token: the CLS row of norm(tokens)


def random_state_dict(
    width: int = 128,
    depth: int = 2,
    grid: int = 37,
    mlp: str = "gelu",
    registers: int = 0,
    patch: int = 14,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A state dict in the official layout with seeded random values in every entry (tests, and
    ``weights="random"``): weights ~ N(0, 1/fan_in), biases and tokens ~ N(0, 0.1^2) (cls, pos and register
    tokens ~ N(0, 1)), LayerNorm weights ~ 1 + N(0, 0.1^2), LayerScale ~ 0.5 + N(0, 0.1^2)."""
    hidden = 4 * width if mlp == "gelu" else (int(4 * width * 2 / 3) + 7) // 8 * 8
    arch = DinoV2Architecture(width, depth, patch, grid, mlp, hidden, registers, True)
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, param in DinoV2ViT(arch).state_dict().items():
        noise = torch.randn(param.shape, generator=generator)
        if name.endswith("gamma"):
            value = 0.5 + 0.1 * noise
        elif ".norm" in name or name.startswith("norm"):
            value = (1.0 if name.endswith("weight") else 0.0) + 0.1 * noise
        elif name.endswith("weight"):
            value = noise / math.sqrt(param[0].numel())
        elif name.endswith("bias"):
            value = 0.1 * noise
        else:  # cls_token, pos_embed, register_tokens
            value = noise
        state[name] = value
    state["mask_token"] = torch.zeros(1, width)
    return state


class DinoV2Features:
    """CLS features of a DINOv2 ViT (``name = "fd-dinov2"``; ``dim`` = the width of the weights: 1024 for
    ViT-L/14), computed as torch-fidelity's ``fd-dinov2-vit-l-14`` setting computes them.

    ``weights``:
      - a path to the official state dict (``dinov2_vitl14_pretrain.pth``; any of s/b/l/g and ``_reg4``,
        or the same tensors as ``.safetensors``). ``.pth``/``.pt`` are read with
        ``torch.load(weights_only=True)``: a pickle that would run code is refused. A missing file raises
        FileNotFoundError; a file that is not such a state dict, ValueError (or pickle.UnpicklingError).
      - ``"random"``: :func:`random_state_dict` with its defaults (width 128, 2 blocks, 2 heads, GELU MLP,
        37x37 stored grid, seed 0): fast, for tests; nothing is read or downloaded.

    Nothing is ever downloaded. Pixel mapping as :class:`InceptionFeatures`: images in [-1, 1]
    ``[N, 1 or 3, H, W]`` become 8-bit pixels ``round((x + 1) * 127.5)`` (grey repeated to RGB), then
    :func:`dinov2_input` (TF1-style bilinear resize to 224x224, ImageNet normalisation) and the network.
    Features are float32 [N, D] on ``device``.
    """

    name = "fd-dinov2"

    def __init__(self, weights: str | os.PathLike, device: torch.device | str = "cpu", batch_size: int = 64) -> None:
        if not isinstance(weights, (str, os.PathLike)):
            raise TypeError(f"weights must be a path or 'random', got {type(weights).__name__}")
        if weights == "random":
            state = random_state_dict()
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"DINOv2 weights file not found: {path}")
            state = read_state_dict(path, "a DINOv2 ViT")
        self.network = DinoV2ViT.from_state_dict(state).to(device).eval().requires_grad_(False)
        self.dim = self.network.arch.width
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.weights = str(weights)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """CLS features [N, D] of images [N, 1 or 3, H, W] in [-1, 1]."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape)
            raise ValueError(f"DinoV2Features expects images [N, 1 or 3, H, W] in [-1, 1], got {shape}")
        features = []
        with torch.no_grad():
            for chunk in images.split(self.batch_size):
                pixels = to_uint8_rgb(chunk.to(self.device, torch.float32))
                features.append(self.network(dinov2_input(pixels)).to(torch.float32))
        if not features:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.cat(features)
