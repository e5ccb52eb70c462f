"""The authors' flax DiT parameter tree as weights of this package's :class:`~shortcut_models.models.DiT`.

The authors' checkpoints hold no architecture config, so :func:`infer_architecture` reads it from the
shapes of the tree (hidden size, depth, patch, channels, MLP ratio, classes); only the head count is
not in the shapes and comes from the user. Their network equals ``DiT(..., authors_quirks=True)``
(queries scaled by 1/head_dim); the names map as follows (flax kernels are [in, out], torch weights
[out, in]; the patch convolution is [p, p, in, out] in flax and [out, in, p, p] in torch):

=============================================  ==============================================
flax (``params`` tree)                          this package (state-dict key)
=============================================  ==============================================
PatchEmbed_0/Conv_0                             x_embedder
TimestepEmbedder_0/Dense_0, Dense_1             conditioning.t_embedder.mlp.0, mlp.2
TimestepEmbedder_1/Dense_0, Dense_1             conditioning.d_embedder.mlp.0, mlp.2
LabelEmbedder_0/Embed_0/embedding               conditioning.y_embedder.table.weight
DiTBlock_i/Dense_0                              blocks.i.adaLN_modulation.1
DiTBlock_i/Dense_2, Dense_1, Dense_3 (q, k, v)  blocks.i.attn.qkv (stacked q, k, v)
DiTBlock_i/Dense_4                              blocks.i.attn.proj
DiTBlock_i/MlpBlock_0/Dense_0, Dense_1          blocks.i.mlp.0, mlp.2
FinalLayer_0/Dense_0, Dense_1                   final_layer.adaLN_modulation.1, final_layer.linear
Embed_0 (a per-time log-variance, unused)       dropped
=============================================  ==============================================

The label table has ``num_classes + 1`` rows, the last the null label. A table of 2 rows is an
unconditional model (the authors train those with every label set to the null row, index 1): only
the null row is kept, as the single row (index 0) of this package's unconditional table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import UserError

__all__ = ["AuthorsArchitecture", "authors_parameter_shapes", "authors_state_dict", "infer_architecture", "nest"]


@dataclass(frozen=True)
class AuthorsArchitecture:
    """What the shapes of an authors' parameter tree say about the network (all but the head count)."""

    hidden_size: int
    depth: int
    patch_size: int
    in_channels: int
    mlp_ratio: float
    num_classes: int  # real classes in this package's convention (0 = unconditional)
    table_rows: int  # rows of the authors' label table (their num_classes + 1)

    def describe(self) -> str:
        classes = f"{self.num_classes} classes" if self.num_classes else "unconditional"
        return (
            f"hidden size {self.hidden_size}, depth {self.depth}, patch {self.patch_size}, "
            f"{self.in_channels} channels, MLP ratio {self.mlp_ratio:g}, {classes}"
        )


def authors_parameter_shapes(arch: AuthorsArchitecture) -> dict[str, tuple[int, ...]]:
    """Every parameter of the authors' DiT for ``arch``: {"DiTBlock_0/Dense_0/kernel": shape, ...}.

    The inverse of :func:`infer_architecture` (tests and benchmarks build checkpoints from it).
    """
    h, p, c, m = arch.hidden_size, arch.patch_size, arch.in_channels, int(arch.hidden_size * arch.mlp_ratio)
    shapes: dict[str, tuple[int, ...]] = {}

    def dense(path: str, n_in: int, n_out: int) -> None:
        shapes[f"{path}/kernel"], shapes[f"{path}/bias"] = (n_in, n_out), (n_out,)

    shapes["PatchEmbed_0/Conv_0/kernel"], shapes["PatchEmbed_0/Conv_0/bias"] = (p, p, c, h), (h,)
    for embedder in ("TimestepEmbedder_0", "TimestepEmbedder_1"):
        dense(f"{embedder}/Dense_0", 256, h)
        dense(f"{embedder}/Dense_1", h, h)
    shapes["LabelEmbedder_0/Embed_0/embedding"] = (arch.table_rows, h)
    for i in range(arch.depth):
        dense(f"DiTBlock_{i}/Dense_0", h, 6 * h)
        for j in (1, 2, 3, 4):
            dense(f"DiTBlock_{i}/Dense_{j}", h, h)
        dense(f"DiTBlock_{i}/MlpBlock_0/Dense_0", h, m)
        dense(f"DiTBlock_{i}/MlpBlock_0/Dense_1", m, h)
    dense("FinalLayer_0/Dense_0", h, 2 * h)
    dense("FinalLayer_0/Dense_1", h, p * p * c)
    shapes["Embed_0/embedding"] = (256, 1)
    return shapes


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"a/b/c": x} -> {"a": {"b": {"c": x}}}: the nesting of a flax parameter tree."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _get(tree: Mapping[str, Any], path: str) -> np.ndarray:
    node: Any = tree
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            raise UserError(f"the checkpoint's parameters lack {path} (not a DiT of the authors' code)")
        node = node[part]
    if not isinstance(node, np.ndarray):
        raise UserError(f"the checkpoint's parameter {path} is not an array")
    return node


def infer_architecture(params: Mapping[str, Any]) -> AuthorsArchitecture:
    """Read hidden size, depth, patch, channels, MLP ratio and classes from the shapes of ``params``."""
    conv = _get(params, "PatchEmbed_0/Conv_0/kernel")
    if conv.ndim != 4 or conv.shape[0] != conv.shape[1]:
        raise UserError(f"PatchEmbed_0/Conv_0/kernel has shape {conv.shape}; expected [p, p, channels, hidden]")
    patch, _, channels, hidden = conv.shape
    depth = 0
    while f"DiTBlock_{depth}" in params:
        depth += 1
    if depth == 0:
        raise UserError("the checkpoint's parameters hold no DiTBlock_0 (not a DiT of the authors' code)")
    mlp = _get(params, "DiTBlock_0/MlpBlock_0/Dense_0/kernel")
    table = _get(params, "LabelEmbedder_0/Embed_0/embedding")
    head = _get(params, "FinalLayer_0/Dense_1/kernel")
    if head.shape[1] != patch * patch * channels:
        raise UserError(
            f"the output layer gives {head.shape[1]} values per patch; {patch}x{patch} patches of {channels} "
            "channels need as many outputs as inputs (this package's DiT predicts a velocity of the input's shape)"
        )
    rows = int(table.shape[0])
    return AuthorsArchitecture(
        hidden_size=int(hidden),
        depth=depth,
        patch_size=int(patch),
        in_channels=int(channels),
        mlp_ratio=float(mlp.shape[1]) / float(hidden),
        num_classes=0 if rows <= 2 else rows - 1,
        table_rows=rows,
    )


def _linear(tree: Mapping[str, Any], path: str) -> tuple[np.ndarray, np.ndarray]:
    return _get(tree, f"{path}/kernel").T, _get(tree, f"{path}/bias")


def authors_state_dict(params: Mapping[str, Any], arch: AuthorsArchitecture) -> dict[str, torch.Tensor]:
    """The state dict (without the fixed position table) of this package's DiT for ``params``.

    Raises UserError naming the first parameter whose shape differs from what ``arch`` implies.
    """
    arrays: dict[str, np.ndarray] = {}

    def put(key: str, pair: tuple[np.ndarray, np.ndarray]) -> None:
        arrays[f"{key}.weight"], arrays[f"{key}.bias"] = pair

    conv_kernel, conv_bias = _linear(params, "PatchEmbed_0/Conv_0")  # .T of [p, p, in, out] is [out, in, p, p]
    arrays["x_embedder.weight"], arrays["x_embedder.bias"] = conv_kernel.transpose(0, 1, 3, 2), conv_bias
    for flax_name, ours in (("TimestepEmbedder_0", "t_embedder"), ("TimestepEmbedder_1", "d_embedder")):
        put(f"conditioning.{ours}.mlp.0", _linear(params, f"{flax_name}/Dense_0"))
        put(f"conditioning.{ours}.mlp.2", _linear(params, f"{flax_name}/Dense_1"))
    table = _get(params, "LabelEmbedder_0/Embed_0/embedding")
    arrays["conditioning.y_embedder.table.weight"] = table[-1:] if arch.num_classes == 0 else table
    for i in range(arch.depth):
        block = f"DiTBlock_{i}"
        put(f"blocks.{i}.adaLN_modulation.1", _linear(params, f"{block}/Dense_0"))
        (kw, kb), (qw, qb), (vw, vb) = (_linear(params, f"{block}/Dense_{j}") for j in (1, 2, 3))
        put(f"blocks.{i}.attn.qkv", (np.concatenate([qw, kw, vw]), np.concatenate([qb, kb, vb])))
        put(f"blocks.{i}.attn.proj", _linear(params, f"{block}/Dense_4"))
        put(f"blocks.{i}.mlp.0", _linear(params, f"{block}/MlpBlock_0/Dense_0"))
        put(f"blocks.{i}.mlp.2", _linear(params, f"{block}/MlpBlock_0/Dense_1"))
    put("final_layer.adaLN_modulation.1", _linear(params, "FinalLayer_0/Dense_0"))
    put("final_layer.linear", _linear(params, "FinalLayer_0/Dense_1"))
    return {key: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for key, a in arrays.items()}
