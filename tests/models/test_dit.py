"""Tests of the DiT network: zero init, presets on the meta device, conditioning, authors' quirks."""

from __future__ import annotations

import math

import pytest
import torch

from shortcut_models.models.dit import DIT_PRESETS, DiT, SelfAttention, sincos_position_embedding

NUM_CLASSES = 10


def _inputs(batch: int = 4, channels: int = 1, size: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=g)
    t = torch.rand(batch, generator=g)
    d = 2.0 ** -torch.randint(0, 8, (batch,), generator=g).float()
    y = torch.randint(0, NUM_CLASSES + 1, (batch,), generator=g)
    return x, t, d, y


def _nano(authors_quirks: bool = False, seed: int = 0) -> DiT:
    torch.manual_seed(seed)
    return DiT.from_preset("DiT-Nano", 8, 1, NUM_CLASSES, authors_quirks=authors_quirks)


def _perturb(model: DiT, std: float = 0.05, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("quirks", [False, True])
def test_output_is_exactly_zero_at_init(quirks: bool) -> None:
    model = _nano(quirks)
    x, t, d, y = _inputs()
    out = model(x, t, d, y)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))
    block_mod = model.blocks[0].adaLN_modulation[-1].weight
    # Standard DiT zeroes the block modulation; the authors' code keeps the xavier init.
    assert bool((block_mod != 0).any()) == quirks


def test_position_embedding_is_fixed_buffer() -> None:
    model = _nano()
    names = {n for n, _ in model.named_parameters()}
    assert "pos_embed" not in names
    assert "pos_embed" in dict(model.named_buffers())
    table = model.pos_embed[0]
    assert table.shape == (16, 64)
    # every token gets a distinct code; token 0 (row 0, col 0) is [0..0, 1..1] per half
    assert torch.cdist(table, table).add(torch.eye(16) * 1e3).min() > 0.1
    quarter = 64 // 4
    assert torch.allclose(table[0], torch.cat([torch.zeros(quarter), torch.ones(quarter)] * 2))
    # moving one column changes only the first half, moving one row only the second half
    assert torch.equal(table[0, 32:], table[1, 32:]) and not torch.equal(table[0, :32], table[1, :32])
    assert torch.equal(table[0, :32], table[4, :32]) and not torch.equal(table[0, 32:], table[4, 32:])


def test_unpatchify_inverts_patch_layout() -> None:
    model = _nano()
    x = torch.randn(2, 1, 8, 8)
    p, g = model.patch_size, model.grid
    tokens = x.reshape(2, 1, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(2, g * g, p * p)
    assert torch.equal(model.unpatchify(tokens), x)


@pytest.mark.parametrize("name", sorted(DIT_PRESETS))
def test_every_preset_builds_on_meta(name: str) -> None:
    with torch.device("meta"):
        model = DiT.from_preset(name, 32, 4, 1000)
        x = torch.empty(2, 4, 32, 32)
        out = model(x, torch.rand(2), torch.rand(2), torch.zeros(2, dtype=torch.long))
    assert out.shape == (2, 4, 32, 32)
    assert out.device.type == "meta"
    assert model.num_classes == 1000 and model.in_channels == 4
    assert model.input_size == 32 and model.patch_size == DIT_PRESETS[name]["patch_size"]
    assert len(model.blocks) == DIT_PRESETS[name]["depth"]


def test_dit_b2_parameter_count() -> None:
    with torch.device("meta"):
        model = DiT.from_preset("DiT-B/2", 32, 4, 1000)
    n = model.num_parameters()
    assert n == sum(p.numel() for p in model.parameters())
    assert 125e6 < n < 135e6


def test_presets_have_the_documented_sizes() -> None:
    sizes = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16)}
    for family, (hidden, depth, heads) in sizes.items():
        for patch in (2, 4, 8):
            cfg = DIT_PRESETS[f"DiT-{family}/{patch}"]
            assert cfg == {"patch_size": patch, "hidden_size": hidden, "depth": depth, "num_heads": heads}
    for name in ("DiT-Ti/2", "DiT-Digits", "DiT-Digits/4", "DiT-Nano"):
        assert name in DIT_PRESETS


def test_output_depends_on_t_d_and_y_after_training() -> None:
    model = _nano()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, t, d, y = _inputs(batch=16)
    target = torch.randn_like(x)
    losses = []
    for _ in range(5):
        loss = (model(x, t, d, y) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]

    model.eval()
    x1, t1 = x[:2], torch.full((2,), 0.5)
    d1, y1 = torch.full((2,), 1.0), torch.tensor([3, 3])
    with torch.no_grad():
        base = model(x1, t1, d1, y1)
        assert not torch.allclose(base, model(x1, t1, torch.full((2,), 1 / 128), y1), atol=1e-6)
        assert not torch.allclose(base, model(x1, t1, d1, torch.tensor([NUM_CLASSES] * 2)), atol=1e-6)
        assert not torch.allclose(base, model(x1, torch.full((2,), 0.1), d1, y1), atol=1e-6)
        # and the same inputs give the same output (no hidden randomness)
        assert torch.equal(base, model(x1, t1, d1, y1))


def test_authors_quirks_change_attention_scale_only() -> None:
    plain, quirky = _nano(False), _nano(True)
    _perturb(plain)
    quirky.load_state_dict(plain.state_dict())
    x, t, d, y = _inputs()
    with torch.no_grad():
        out_plain, out_quirky = plain(x, t, d, y), quirky(x, t, d, y)
    assert out_plain.abs().max() > 1e-3
    assert not torch.allclose(out_plain, out_quirky, atol=1e-5)
    head_dim = 64 // 2
    assert plain.blocks[0].attn.scale == pytest.approx(1 / math.sqrt(head_dim))
    assert quirky.blocks[0].attn.scale == pytest.approx(1 / head_dim)
    # with the standard scale forced back, the quirky model is the same function
    for block in quirky.blocks:
        block.attn.scale = 1 / math.sqrt(head_dim)
    with torch.no_grad():
        assert torch.allclose(out_plain, quirky(x, t, d, y), atol=1e-6)


@pytest.mark.parametrize("quirks", [False, True])
def test_attention_matches_manual_softmax(quirks: bool) -> None:
    torch.manual_seed(0)
    dim, heads = 24, 3
    attn = SelfAttention(dim, heads, authors_quirks=quirks)
    x = torch.randn(2, 5, dim)
    q, k, v = attn.qkv(x).reshape(2, 5, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    denom = dim // heads if quirks else math.sqrt(dim // heads)
    weights = torch.softmax(q @ k.transpose(-2, -1) / denom, dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, dim))
    assert torch.allclose(attn(x), expected, atol=1e-5)


def test_bf16_autocast_forward() -> None:
    model = _nano()
    _perturb(model)
    x, t, d, y = _inputs()
    with torch.no_grad():
        ref = model(x, t, d, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, t, d, y)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.allclose(out.float(), ref, atol=0.1 * ref.abs().max().item())


def test_meta_model_can_be_materialised() -> None:
    with torch.device("meta"):
        model = DiT.from_preset("DiT-Nano", 8, 1, NUM_CLASSES)
    model.to_empty(device="cpu")
    model.initialize_weights()
    assert torch.allclose(model.pos_embed[0], sincos_position_embedding(64, 4))
    x, t, d, y = _inputs()
    assert torch.equal(model(x, t, d, y), torch.zeros_like(x))


def test_bad_preset_name_raises() -> None:
    with pytest.raises(ValueError, match="unknown DiT preset 'DiT-Q/3'.*DiT-B/2"):
        DiT.from_preset("DiT-Q/3", 32, 4)


def test_input_size_not_divisible_by_patch_raises() -> None:
    with pytest.raises(ValueError, match="input_size 30 must be divisible by patch_size 4"):
        DiT.from_preset("DiT-S/4", 30, 4)
    with pytest.raises(ValueError, match="divisible by patch_size"):
        DiT(input_size=9, in_channels=1, patch_size=2, hidden_size=64, depth=1, num_heads=2)


@pytest.mark.parametrize("quirks", [False, True])
def test_forward_modulated_is_forward(quirks: bool) -> None:
    """A conditioning computed ahead gives the forward pass bit for bit, and the rows of a modulation of
    several inputs are those of each input's own.

    The first is the same computation (forward runs the same layers on the same shapes, the modulation
    merely asked earlier), so it holds bit for bit on any machine. The second is not: the modulation of 12
    rows goes through 12-row linear layers, which may round differently from 6-row ones (they differ here
    by up to ~4e-7 on outputs below 1 on one CPU, and not at all on another), so it is compared up to 1e-5;
    rows of the wrong input differ by over 4e-2."""
    model = _nano(quirks)
    _perturb(model)
    x, t, d, y = _inputs(batch=6)
    with torch.no_grad():
        out = model(x, t, d, y)
        assert torch.equal(model.forward_modulated(x, model.modulation(t, d, y)), out)
        stacked = model.modulation(torch.cat([t, t.flip(0)]), d.repeat(2), torch.cat([y, y.flip(0)]))
        torch.testing.assert_close(model.forward_modulated(x, stacked.rows(0, 6)), out, rtol=1e-5, atol=1e-5)
        flipped = model(x, t.flip(0), d, y.flip(0))
        torch.testing.assert_close(model.forward_modulated(x, stacked.rows(6, 12)), flipped, rtol=1e-5, atol=1e-5)
    assert len(stacked.layers) == len(model.blocks) + 1 and stacked.layers[0][0].shape == (12, 1, 64)
