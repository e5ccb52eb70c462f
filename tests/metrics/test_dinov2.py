"""The DINOv2 feature extractor behind fd-dinov2: the network against Hugging Face transformers' independent
implementation (official weights layout, written by a key mapping here), the positional-embedding
interpolation against the bicubic formula written out, a closed-form case, the preprocessing, and refusals."""

import math

import numpy as np
import pytest
import torch

from shortcut_models.metrics.dinov2 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DinoV2Features,
    DinoV2ViT,
    dinov2_input,
    interpolate_pos_embed,
    random_state_dict,
    resize_bilinear_tf1,
)
from shortcut_models.metrics.features import FeatureExtractor, get_feature_extractor

transformers = pytest.importorskip("transformers")

WIDTH, HEADS, LAYERS = 128, 2, 2  # head dimension 64, as DINOv2's


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Seeded random values in every parameter (LayerScale and LayerNorm included), so that no
    parameter can be swapped with another or dropped without the output changing."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("lambda1"):
                param.copy_(0.5 + 0.2 * noise)
            elif "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.2 * noise)
            elif name.endswith("weight") and param.ndim > 1:
                param.copy_(noise / math.sqrt(param[0].numel()))
            else:  # biases, LayerNorm biases, cls/mask/register tokens, positional embeddings
                param.copy_(0.3 * noise)
    return model.eval().requires_grad_(False)


def official_state_dict(hf_model) -> dict[str, torch.Tensor]:
    """transformers' Dinov2Model / Dinov2WithRegistersModel parameters under the official DINOv2 names."""
    top = {
        "embeddings.cls_token": "cls_token",
        "embeddings.mask_token": "mask_token",
        "embeddings.register_tokens": "register_tokens",
        "embeddings.position_embeddings": "pos_embed",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight",
        "layernorm.bias": "norm.bias",
    }
    inside = {
        "norm1": "norm1",
        "norm2": "norm2",
        "attention.o_proj": "attn.proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
        "mlp.down_proj": "mlp.w3",
    }
    hf = {k: v.detach().clone() for k, v in hf_model.state_dict().items()}
    out = {top[k]: hf.pop(k) for k in list(hf) if k in top}
    for i in range(hf_model.config.num_hidden_layers):
        src, dst = f"encoder.layer.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            for a, b in inside.items():
                if f"{src}{a}.{p}" in hf:
                    out[f"{dst}{b}.{p}"] = hf.pop(f"{src}{a}.{p}")
            out[f"{dst}attn.qkv.{p}"] = torch.cat([hf.pop(f"{src}attention.{n}_proj.{p}") for n in "qkv"])
            if f"{src}mlp.gate_proj.{p}" in hf:  # official w12 = [gate (through silu); up]
                out[f"{dst}mlp.w12.{p}"] = torch.cat(
                    [hf.pop(f"{src}mlp.gate_proj.{p}"), hf.pop(f"{src}mlp.up_proj.{p}")]
                )
        out[f"{dst}ls1.gamma"] = hf.pop(f"{src}layer_scale1.lambda1")
        out[f"{dst}ls2.gamma"] = hf.pop(f"{src}layer_scale2.lambda1")
    assert not hf, f"unmapped parameters: {sorted(hf)}"
    return out


def hf_dinov2(image_size: int, swiglu: bool = False, registers: int = 0, seed: int = 0):
    common = {
        "hidden_size": WIDTH,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "patch_size": 14,
        "image_size": image_size,
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu",
        "attn_implementation": "eager",
    }
    if registers:
        config = transformers.Dinov2WithRegistersConfig(num_register_tokens=registers, **common)
        return randomised(transformers.Dinov2WithRegistersModel(config), seed)
    config = transformers.Dinov2Config(use_swiglu_ffn=swiglu, **common)
    return randomised(transformers.Dinov2Model(config), seed)


def hf_cls(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(pixel_values=x)
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])  # the CLS row after the final LayerNorm
    return out.pooler_output


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| / max |theirs| (element-wise ratios blow up where a feature is near 0)."""
    return float((ours.detach() - theirs).abs().max() / theirs.abs().max())


def assert_same(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    difference = relative_difference(ours, theirs)
    print(f"{what}: max relative difference {difference:.1e}")
    assert difference < 1e-5


def assert_same_in_float64(network: DinoV2ViT, model, x: torch.Tensor, what: str, tolerance: float = 1e-10) -> None:
    """The same comparison in float64, where round-off no longer hides a small systematic difference."""
    ours, theirs = network.double()(x.double()), hf_cls(model.double(), x.double())
    difference = relative_difference(ours, theirs)
    print(f"{what}, float64: max relative difference {difference:.1e}")
    assert difference < tolerance
    network.float(), model.float()


def cubic_matrix(stored: int, new: int) -> np.ndarray:
    """[new, stored] weights of PyTorch's bicubic resampling (Keys' cubic, a = -0.75, edge pixels repeated)
    when given scale_factor (new + 0.1) / stored: output i reads source (i + 0.5) * stored / (new + 0.1) - 0.5."""
    a = -0.75

    def kernel(d: float) -> float:
        d = abs(d)
        if d <= 1:
            return (a + 2) * d**3 - (a + 3) * d**2 + 1
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a if d < 2 else 0.0

    weights = np.zeros((new, stored))
    for i in range(new):
        source = (i + 0.5) * stored / (new + 0.1) - 0.5
        base = math.floor(source)
        for j in range(base - 1, base + 3):
            weights[i, min(max(j, 0), stored - 1)] += kernel(source - j)
    return weights


def official_interpolation(pos_embed: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The official DINOv2 positional-embedding interpolation written as two matrix products (float64)."""
    side, dim = math.isqrt(pos_embed.shape[1] - 1), pos_embed.shape[2]
    grid = pos_embed[0, 1:].double().numpy().reshape(side, side, dim)
    patches = np.einsum("rs,stc,qt->rqc", cubic_matrix(side, rows), grid, cubic_matrix(side, cols))
    return torch.cat([pos_embed[0, :1].double(), torch.from_numpy(patches.reshape(rows * cols, dim))])[None]


def pixels(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("swiglu", [False, True], ids=["gelu", "swiglu"])
def test_matches_transformers_at_the_stored_grid(tmp_path, swiglu):
    """DinoV2Features (file -> pixels -> 224x224 -> network) equals transformers' Dinov2Model on the same
    preprocessed pixels, when the stored grid is 16x16 (no interpolation)."""
    model = hf_dinov2(224, swiglu=swiglu)
    torch.save(official_state_dict(model), tmp_path / "dinov2.pth")
    extractor = DinoV2Features(tmp_path / "dinov2.pth")
    images = pixels(3, 40)
    x = dinov2_input(images)
    assert extractor.dim == WIDTH and extractor.network.arch.mlp == ("swiglu" if swiglu else "gelu")
    what = "swiglu" if swiglu else "gelu"
    assert_same(extractor(images.float() / 127.5 - 1), hf_cls(model, x), what)
    assert_same_in_float64(extractor.network, model, x, what)


def test_matches_transformers_with_registers():
    """Register tokens (Dinov2WithRegistersModel, the *_reg4 files): after the CLS token, no positional
    embedding. At the stored grid only: transformers interpolates that model's embeddings with antialias."""
    model = hf_dinov2(42, registers=4, seed=1)
    network = DinoV2ViT.from_state_dict(official_state_dict(model))
    x = torch.randn(3, 3, 42, 42, generator=torch.Generator().manual_seed(1))
    assert network.arch.registers == 4
    assert_same(network(x), hf_cls(model, x), "registers")
    assert_same_in_float64(network, model, x, "registers")


def test_interpolated_grid_matches_transformers_given_the_official_embeddings(tmp_path):
    """Stored 3x3 grid, 224-pixel input (16x16). transformers interpolates with size=(16, 16), not the
    official scale_factor (16 + 0.1) / 3, so it cannot be the reference for this step: the reference is a
    transformers model built for 224 pixels whose positional embeddings are the official interpolation
    written out (:func:`official_interpolation`); everything else is the stored model's."""
    stored = hf_dinov2(42, seed=2)
    torch.save(official_state_dict(stored), tmp_path / "dinov2.pth")
    reference = hf_dinov2(224, seed=2)
    reference.load_state_dict(
        {k: v for k, v in stored.state_dict().items() if "position_embeddings" not in k}, strict=False
    )
    with torch.no_grad():
        reference.embeddings.position_embeddings.copy_(
            official_interpolation(stored.embeddings.position_embeddings, 16, 16).float()
        )
    images = pixels(3, 30, seed=2)
    x = dinov2_input(images)
    extractor = DinoV2Features(tmp_path / "dinov2.pth")
    assert_same(extractor(images.float() / 127.5 - 1), hf_cls(reference, x), "interpolated 3x3 -> 16x16")
    # the interpolation runs in float32 even here, as the official code's (pos_embed.float()): about 1e-7
    assert_same_in_float64(extractor.network, reference, x, "interpolated 3x3 -> 16x16", tolerance=1e-6)
    # transformers' own interpolation (size=(16, 16)) gives other numbers: the offset matters
    assert relative_difference(hf_cls(stored, x), hf_cls(reference, x)) > 1e-3


@pytest.mark.parametrize(("rows", "cols"), [(16, 16), (16, 11), (40, 5)])
def test_interpolation_is_the_official_formula(rows, cols):
    pos_embed = torch.randn(1, 1 + 37 * 37, 8, generator=torch.Generator().manual_seed(0))
    ours = interpolate_pos_embed(pos_embed, rows, cols)
    expected = official_interpolation(pos_embed, rows, cols)
    assert ours.shape == (1, 1 + rows * cols, 8) and torch.equal(ours[:, 0], pos_embed[:, 0])
    assert torch.allclose(ours.double(), expected, rtol=1e-5, atol=1e-5)


def test_stored_embeddings_are_used_as_they_are_at_the_stored_grid():
    network = DinoV2ViT.from_state_dict(random_state_dict(grid=3))
    assert network.position_embedding(42, 42) is network.pos_embed
    # same patch count but not square in pixels: the official code interpolates (scale (3 + 0.1) / 3)
    assert not torch.equal(network.position_embedding(42, 43), network.pos_embed)


def test_zero_layerscale_gives_the_normalised_cls_embedding():
    """With every LayerScale at 0 the blocks add nothing: the output is the final LayerNorm of
    cls_token + pos_embed[0], whatever the image."""
    state = random_state_dict(seed=3)
    state.update({k: torch.zeros_like(v) for k, v in state.items() if k.endswith("gamma")})
    network = DinoV2ViT.from_state_dict(state)
    token = (state["cls_token"] + state["pos_embed"][:, :1])[0, 0].double()
    normalised = (token - token.mean()) / torch.sqrt(token.var(unbiased=False) + 1e-6)
    expected = normalised * state["norm.weight"].double() + state["norm.bias"].double()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    out = network(x)
    assert torch.allclose(out.double(), expected.expand(2, -1), rtol=1e-5, atol=1e-5)


def test_a_constant_image_becomes_the_expected_normalised_pixels():
    value = 0.3  # pixel round((0.3 + 1) * 127.5) = 166
    extractor = DinoV2Features("random")
    seen = {}
    extractor.network.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    extractor(torch.full((1, 1, 20, 30), value))
    expected = torch.tensor([(166 - 255 * m) / (255 * s) for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
    assert seen["x"].shape == (1, 3, 224, 224)
    assert torch.allclose(seen["x"], expected.view(1, 3, 1, 1).expand(1, 3, 224, 224), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [(37, 53), (300, 224), (224, 224)])
def test_resize_is_torch_fidelity_bit_for_bit(size):
    """The same float32 output as torch-fidelity's interpolate_bilinear_2d_like_tensorflow1x (its
    fd-dinov2 preprocessing), up- and downsampling."""
    from shortcut_models.metrics.inception import torch_fidelity_module

    try:
        tf_resize = torch_fidelity_module("interpolate_compat_tensorflow").interpolate_bilinear_2d_like_tensorflow1x
    except ImportError:
        pytest.skip("torch-fidelity is not installed")
    x = torch.randint(0, 256, (2, 3, *size), generator=torch.Generator().manual_seed(0)).float()
    theirs = tf_resize(x, size=(224, 224), align_corners=False)
    assert torch.equal(resize_bilinear_tf1(x, 224, 224), theirs)


def test_random_weights_extractor_and_registry():
    extractor = get_feature_extractor("fd-dinov2", weights="random")
    assert isinstance(extractor, FeatureExtractor) and extractor.name == "fd-dinov2" and extractor.dim == 128
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    features = extractor(images)
    assert features.shape == (3, 128) and features.dtype == torch.float32 and torch.isfinite(features).all()
    assert torch.equal(DinoV2Features("random")(images), features)  # seeded: the same every time
    assert torch.allclose(extractor(images[:, :1]), extractor(images[:, :1].expand(-1, 3, -1, -1)))  # grey


def test_safetensors_file_loads_the_same(tmp_path):
    from safetensors.torch import save_file

    state = random_state_dict(width=64, depth=1, grid=4, seed=4)
    torch.save(state, tmp_path / "w.pth")
    save_file(state, str(tmp_path / "w.safetensors"))
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    a, b = DinoV2Features(tmp_path / "w.pth"), DinoV2Features(str(tmp_path / "w.safetensors"))
    assert a.dim == 64 and torch.equal(a(images), b(images))


def test_refusals(tmp_path):
    with pytest.raises(FileNotFoundError, match="DINOv2 weights file not found"):
        DinoV2Features(tmp_path / "nope.pth")
    torch.save({"model": random_state_dict(depth=1)}, tmp_path / "wrapped.pth")
    with pytest.raises(ValueError, match="'model' holds a dict, not a tensor"):
        DinoV2Features(tmp_path / "wrapped.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="missing cls_token, pos_embed"):
        DinoV2Features(tmp_path / "other.pth")
    state = random_state_dict(depth=2)
    del state["blocks.1.ls2.gamma"]
    with pytest.raises(ValueError, match="missing blocks.1.ls2.gamma"):
        DinoV2ViT.from_state_dict(state)
    state = random_state_dict(depth=1)
    state["head.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="unexpected entries for a DINOv2 ViT: head.weight"):
        DinoV2ViT.from_state_dict(state)
    state = random_state_dict(depth=1)
    state["blocks.0.mlp.fc2.weight"] = torch.zeros(5, 5)
    with pytest.raises(ValueError, match="do not fit a DINOv2 ViT"):
        DinoV2ViT.from_state_dict(state)
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        DinoV2ViT.from_state_dict(random_state_dict(depth=1, grid=2))(torch.zeros(1, 3, 30, 28))
