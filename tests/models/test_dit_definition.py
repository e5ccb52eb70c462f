"""The DiT's one definition of its layers against the DiT written out here from its description, on all
three paths that run it: ``forward``, ``forward_modulated`` at a conditioning computed ahead, and ``jvp``
(output, and derivative against ``torch.func.jvp`` of the written-out network).

The paths share their arithmetic (models/primitives.py), so comparing them with each other cannot see an
error in it; the written-out network below can, and an error planted in the shared definition shows on
every path (the last test). Float64, every weight random, so no zero-initialised layer hides a term.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.func import jvp

from shortcut_models.models import dit
from shortcut_models.models.dit import DiT

OPTIONS = [
    {"authors_quirks": q, "step_input": s, "guidance_input": g, "num_classes": n}
    for q, s, g, n in itertools.product([False, True], ["level", "size"], [False, True], [0, 10])
]


def silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def normalise(h: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    mean = h.mean(-1, keepdim=True)
    return (h - mean) / ((h - mean).pow(2).mean(-1, keepdim=True) + eps).sqrt()


def dense(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return x @ layer.weight.T + layer.bias


def embed_scalar(embedder, s: torch.Tensor) -> torch.Tensor:
    """256 sinusoids (cos half first, periods from 2 pi to 2 pi 10^4) -> Linear -> SiLU -> Linear."""
    freqs = torch.exp(-math.log(10000.0) * torch.arange(128, dtype=torch.float64) / 128)
    args = s[:, None] * freqs[None]
    first, _, second = embedder.mlp
    return dense(second, silu(dense(first, torch.cat([torch.cos(args), torch.sin(args)], dim=1))))


def conditioning(model: DiT, t, d, y, guidance) -> torch.Tensor:
    """emb_t(t) + emb_d(-log2 d or d) + table[y] (+ emb(1 - 1/w) + emb(lo) + emb(hi) with the guidance input)."""
    cond = model.conditioning
    step = -torch.log2(d) if cond.step_input == "level" else d
    c = embed_scalar(cond.t_embedder, t) + embed_scalar(cond.d_embedder, step) + cond.y_embedder.table.weight[y]
    if model.guidance_input:
        w, lo, hi = guidance.unbind(1)
        g = cond.guidance_embedder
        c = c + embed_scalar(g.scale_embedder, 1 - 1 / w) + embed_scalar(g.lo_embedder, lo)
        c = c + embed_scalar(g.hi_embedder, hi)
    return c


def adaln(layer, c: torch.Tensor, parts: int) -> list[torch.Tensor]:
    return [m[:, None] for m in dense(layer[1], silu(c)).chunk(parts, dim=1)]


def block(blk, h: torch.Tensor, c: torch.Tensor, quirks: bool) -> torch.Tensor:
    """adaLN-Zero: h + gate_a attention(LN(h) (1 + scale_a) + shift_a), then the same with the MLP; the
    attention scales q k^T by 1/sqrt(head_dim), or by 1/head_dim with the authors' quirks."""
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = adaln(blk.adaLN_modulation, c, 6)
    b, n, width = h.shape
    heads = blk.attn.num_heads
    head_dim = width // heads
    z = normalise(h) * (1 + scale_a) + shift_a
    q, k, v = (a.reshape(b, n, heads, head_dim).transpose(1, 2) for a in dense(blk.attn.qkv, z).chunk(3, dim=-1))
    scale = 1 / head_dim if quirks else 1 / math.sqrt(head_dim)
    attended = torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v
    h = h + gate_a * dense(blk.attn.proj, attended.transpose(1, 2).reshape(b, n, width))
    z = normalise(h) * (1 + scale_m) + shift_m
    fc1, _, fc2 = blk.mlp
    return h + gate_m * dense(fc2, gelu_tanh(dense(fc1, z)))


def written_out(model: DiT, x, t, d, y, guidance=None) -> torch.Tensor:
    """The DiT on x [B, C, H, W]: p x p patches (channel, row, col) -> Linear + position table -> blocks ->
    adaLN final layer -> each token's patch (row, col, channel) back in place."""
    b, ch, size, _ = x.shape
    p, g = model.patch_size, model.grid
    patches = x.reshape(b, ch, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, ch * p * p)
    conv = model.x_embedder
    h = patches @ conv.weight.reshape(len(conv.weight), -1).T + conv.bias + model.pos_embed
    c = conditioning(model, t, d, y, guidance)
    for blk in model.blocks:
        h = block(blk, h, c, model.authors_quirks)
    final = model.final_layer
    shift, scale = adaln(final.adaLN_modulation, c, 2)
    out = dense(final.linear, normalise(h) * (1 + scale) + shift)
    return out.reshape(b, g, g, p, p, ch).permute(0, 5, 1, 3, 2, 4).reshape(b, ch, size, size)


def random_dit(options: dict) -> DiT:
    torch.manual_seed(0)
    model = DiT.from_preset("DiT-Nano", 8, 2, **options).double()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model


def inputs(model: DiT, batch: int = 5):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 2, 8, 8, generator=g, dtype=torch.float64)
    t = torch.rand(batch, generator=g, dtype=torch.float64)
    d = torch.rand(batch, generator=g, dtype=torch.float64) * (1 - t) + 1e-3
    y = torch.randint(0, model.num_classes + 1, (batch,), generator=g)
    tangents = tuple(torch.randn(a.shape, generator=g, dtype=torch.float64) for a in (x, t, d))
    guidance = None
    if model.guidance_input:
        w = torch.linspace(1, 7, batch, dtype=torch.float64)
        guidance = torch.stack([w, torch.full_like(w, 0.2), torch.full_like(w, 0.7)], dim=1)
    return (x, t, d, y), tangents, guidance


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to the rounding of two orders of float64 operations (outputs reach ~20)."""
    assert expected.abs().max() > 1  # a real output, not the zero of an initialised head
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def check_forward(model: DiT, primals, tangents, guidance) -> None:
    close(model(*primals, guidance=guidance), written_out(model, *primals, guidance))


def check_forward_modulated(model: DiT, primals, tangents, guidance) -> None:
    x, t, d, y = primals
    close(model.forward_modulated(x, model.modulation(t, d, y, guidance)), written_out(model, *primals, guidance))


def check_jvp(model: DiT, primals, tangents, guidance) -> None:
    x, t, d, y = primals
    out, tangent = model.jvp(primals, tangents, guidance)
    expected, expected_tangent = jvp(lambda a, b, c: written_out(model, a, b, c, y, guidance), (x, t, d), tangents)
    close(out, expected)
    close(tangent, expected_tangent)


CHECKS = [check_forward, check_forward_modulated, check_jvp]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_every_path_is_the_written_out_network(options, check):
    model = random_dit(options)
    check(model, *inputs(model))


def swapped_heads(out: torch.Tensor) -> torch.Tensor:
    """merge_heads with heads and tokens mixed up: the same shape, the wrong layout."""
    b, heads, n, head_dim = out.shape
    return out.reshape(b, n, heads * head_dim)


def modulations_in_the_wrong_order(layers, c, parts, ops):
    return list(reversed(MODULATIONS(layers, c, parts, ops)))


MODULATIONS = dit.modulations


@pytest.mark.parametrize(
    "name, planted", [("merge_heads", swapped_heads), ("modulations", modulations_in_the_wrong_order)]
)
def test_an_error_in_the_one_definition_shows_on_every_path(monkeypatch, name, planted):
    model = random_dit(OPTIONS[-1])
    point = inputs(model)
    monkeypatch.setattr(dit, name, planted)
    for check in CHECKS:
        with pytest.raises(AssertionError):
            check(model, *point)
