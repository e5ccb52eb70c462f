"""The network option step_input: the step size fed as its level -log2 d ("level", the default) or as d
itself ("size", continuous at d = 0)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from shortcut_models.errors import UserError
from shortcut_models.models import STEP_INPUTS, build_model, build_network, network_spec
from shortcut_models.models.dit import DiT
from shortcut_models.models.mlp import MLP


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every parameter moved off its init (the zero heads would hide the conditioning)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def _networks(step_input: str) -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    dit = DiT.from_preset("DiT-Nano", 8, 1, 10, step_input=step_input)
    mlp = MLP(dim=2, width=32, depth=2, num_classes=10, step_input=step_input)
    return {
        "dit": (_perturbed(dit), torch.randn(3, 1, 8, 8, generator=g)),
        "mlp": (_perturbed(mlp), torch.randn(3, 2, generator=g)),
    }


@pytest.mark.parametrize("kind", ["dit", "mlp"])
def test_size_is_continuous_at_d_zero_and_level_is_not(kind):
    t, y = torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0, 3, 10])
    zero, tiny = torch.zeros(3), torch.full((3,), 1e-6)
    gaps = {}
    for step_input in STEP_INPUTS:
        model, x = _networks(step_input)[kind]
        with torch.no_grad():
            at_zero, near_zero = model(x, t, zero, y), model(x, t, tiny, y)
        gaps[step_input] = float((near_zero - at_zero).abs().max() / at_zero.abs().max())
    assert gaps["size"] < 1e-4  # d -> 0 is d = 0
    assert gaps["level"] > 1e-2  # level 20 against the clamped level 40 of d = 0


def test_size_feeds_d_and_level_feeds_minus_log2_d():
    """The d embedder sees d itself ("size") or -log2 d ("level"): with the same weights, a "size"
    network at d = 1/4 answers as a "level" network at d = 2^-(1/4)."""
    torch.manual_seed(0)
    size = _perturbed(DiT.from_preset("DiT-Nano", 8, 1, 0, step_input="size"))
    level = DiT.from_preset("DiT-Nano", 8, 1, 0)
    level.load_state_dict(size.state_dict())
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 0.7]), torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(size(x, t, torch.full((2,), 0.25), y), level(x, t, torch.full((2,), 2**-0.25), y))


@pytest.mark.parametrize("step_input", STEP_INPUTS)
def test_the_option_is_in_the_network_config_and_rebuilds_it(step_input):
    for model, _ in _networks(step_input).values():
        spec = network_spec(model)
        assert spec["args"]["step_input"] == step_input
        rebuilt = build_network(spec)
        assert rebuilt.config == model.config
        assert network_spec(rebuilt) == spec


def test_the_default_is_the_level():
    assert DiT.from_preset("DiT-Nano", 8, 1).config["step_input"] == MLP().config["step_input"] == "level"


def test_a_bad_value_is_one_clear_error():
    with pytest.raises(ValueError, match=r"step_input must be one of 'level', 'size' .*got 'sizes'"):
        DiT.from_preset("DiT-Nano", 8, 1, step_input="sizes")
    with pytest.raises(ValueError, match="step_input must be one of"):
        MLP(step_input=1)
    with pytest.raises(UserError, match="step_input must be one of"):
        build_model("mlp", (2,), 0, {"step_input": "d"})
    with pytest.raises(ValueError, match="step_input must be one of"):  # a checkpoint's: load_model says where
        spec = network_spec(DiT.from_preset("DiT-Nano", 8, 1))
        spec["args"]["step_input"] = "log"
        build_network(spec)


def test_the_derivative_in_d_stays_bounded_as_d_goes_to_zero_with_size_only():
    """MeanFlow's target differentiates the network in d: through -log2 d that derivative grows as 1/d
    near d = 0, through d itself it stays bounded."""
    t, y = torch.tensor([0.2, 0.6, 0.8]), torch.tensor([1, 2, 10])
    slopes = {}
    for step_input in STEP_INPUTS:
        model, x = _networks(step_input)["dit"]
        slopes[step_input] = []
        for d in (1e-2, 1e-4):
            dd = torch.full((3,), d)
            with sdpa_kernel([SDPBackend.MATH]):  # forward-mode AD has no rule for the fused kernels
                _, du = torch.func.jvp(lambda dd, model=model, x=x: model(x, t, dd, y), (dd,), (torch.ones(3),))
            slopes[step_input].append(float(du.abs().max()))
    assert slopes["level"][1] > 20 * slopes["level"][0]  # 100 times smaller d: tens of times the slope (1/d)
    assert slopes["size"][1] < 2 * slopes["size"][0]
