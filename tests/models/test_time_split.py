"""The split conditioning of the networks (Decoupled MeanFlow, ``time_split=k``): the first k layers see the start
time t, the others the end time t + d, through the one time embedder, the step-size embedder held at
``split_step``.

A split network has the weights of the ordinary one (a flow-matching checkpoint loads into it as it is) and, at
d = 0, gives that network's velocity at (t, split_step): the flow-matching model's own velocity, before any
fine-tuning step (float64, every weight random; the authors' converted DiT layout, both step inputs, with and
without labels). Its layers see the two times as stated; its conditioning computed ahead gives its forward;
bad splits are refused in one line; an ordinary network's config is unchanged.
"""

from __future__ import annotations

import pytest
import torch

from shortcut_models.errors import UserError
from shortcut_models.models import STEP_INPUTS, build_model, build_network, network_spec, with_time_split
from shortcut_models.models.dit import DiT
from shortcut_models.models.embeddings import SPLIT_STEP
from shortcut_models.models.mlp import MLP

SHAPES = {"DiT-Nano": (2, 8, 8), "DiT-Digits": (1, 8, 8), "mlp": (3,)}


def ordinary(name: str, num_classes: int = 10, **args) -> torch.nn.Module:
    """Network ``name`` in float64 with every weight random (the zero-initialised layers would hide errors)."""
    torch.manual_seed(0)
    model = build_model(name, SHAPES[name], num_classes, {"width": 32, **args} if name == "mlp" else args)
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.2)
    return model


def split_copy(model: torch.nn.Module, time_split: int, split_step: float = SPLIT_STEP) -> torch.nn.Module:
    """The split network of ``model``'s kind with ``model``'s weights, loaded strictly (the same keys)."""
    spec = network_spec(model)
    split = build_network({**spec, "args": {**spec["args"], "time_split": time_split, "split_step": split_step}})
    split.double().load_state_dict(model.state_dict(), strict=True)
    return split.eval()


def inputs(name: str, num_classes: int = 10, batch: int = 5):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *SHAPES[name], generator=g, dtype=torch.float64)
    t = torch.rand(batch, generator=g, dtype=torch.float64)
    y = torch.randint(0, num_classes + 1, (batch,), generator=g)
    return x, t, y


CASES = [
    ("DiT-Nano", {"authors_quirks": False}, 1),
    ("DiT-Nano", {"authors_quirks": True}, 1),  # the layout of the authors' converted checkpoints
    ("DiT-Nano", {"authors_quirks": False}, 2),  # every block on the start time, the final layer on the end
    ("DiT-Digits", {}, 3),
    ("mlp", {"depth": 3}, 0),  # only the input layer on the start time
    ("mlp", {"depth": 3}, 2),
]


@pytest.mark.parametrize("num_classes", [0, 10])
@pytest.mark.parametrize("step_input", STEP_INPUTS)
@pytest.mark.parametrize(("name", "args", "k"), CASES)
def test_split_network_gives_the_flow_models_velocity_when_both_times_are_equal(name, args, k, step_input, num_classes):
    flow = ordinary(name, num_classes, step_input=step_input, **args)
    split = split_copy(flow, k)
    x, t, y = inputs(name, num_classes)
    with torch.no_grad():
        expected = flow(x, t, torch.full_like(t, SPLIT_STEP), y)
        got = split(x, t, torch.zeros_like(t), y)
        later = split(x, t, torch.full_like(t, 0.3).minimum(1 - t), y)
    assert expected.abs().max() > 0.1  # a real output, not an initialised zero head
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert (later - expected).abs().max() > 1e-3  # d > 0: the end time reaches the late layers


def test_split_step_is_the_held_step_input():
    """The step-size embedder sees ``split_step`` whatever d: a network trained at d = 1/64 is split at 1/64."""
    flow = ordinary("DiT-Nano")
    x, t, y = inputs("DiT-Nano")
    with torch.no_grad():
        at_64 = flow(x, t, torch.full_like(t, 1 / 64), y)
        torch.testing.assert_close(split_copy(flow, 1, 1 / 64)(x, t, torch.zeros_like(t), y), at_64)
        assert (split_copy(flow, 1)(x, t, torch.zeros_like(t), y) - at_64).abs().max() > 1e-3


@pytest.mark.parametrize("k", [1, 2])
def test_dit_layers_see_the_start_time_before_the_split_and_the_end_time_from_it(k):
    flow = ordinary("DiT-Nano")
    split = split_copy(flow, k)
    x, t, y = inputs("DiT-Nano")
    d = 0.5 * (1 - t)
    held = torch.full_like(t, SPLIT_STEP)
    with torch.no_grad():
        start, end = flow.conditioning(t, held, y), flow.conditioning(t + d, held, y)
        by_hand = flow.run_layers(x, lambda i, layer: layer.modulation(start if i < k else end))
        torch.testing.assert_close(split(x, t, d, y), by_hand, rtol=1e-12, atol=1e-12)
        # the conditioning computed ahead (the sampler's path) gives the forward
        torch.testing.assert_close(split.forward_modulated(x, split.modulation(t, d, y)), by_hand)


def test_mlp_blocks_see_the_start_time_before_the_split_and_the_end_time_from_it():
    flow = ordinary("mlp", depth=3)
    split = split_copy(flow, 1)
    x, t, y = inputs("mlp")
    d = 0.5 * (1 - t)
    held = torch.full_like(t, SPLIT_STEP)
    with torch.no_grad():
        start = flow.cond_act(flow.cond(t, held, y))
        end = flow.cond_act(flow.cond(t + d, held, y))
        h = flow.inp(x) + start
        for i, block in enumerate(flow.blocks):
            h = block(h, start if i < 1 else end)
        torch.testing.assert_close(split(x, t, d, y), flow.out(flow.out_norm(h)), rtol=1e-12, atol=1e-12)


def test_default_split_and_config():
    assert with_time_split("DiT-XL/2", {}, -1, SPLIT_STEP)["time_split"] == 20  # the authors' 20 of 28
    assert with_time_split("DiT-B/2", {}, -1, SPLIT_STEP)["time_split"] == 8
    assert with_time_split("DiT-Digits", {}, -1, SPLIT_STEP)["time_split"] == 3
    assert with_time_split("DiT-Nano", {}, -1, SPLIT_STEP)["time_split"] == 1
    assert with_time_split("mlp", {"depth": 1}, -1, SPLIT_STEP)["time_split"] == 0
    assert with_time_split("mlp", {}, -1, SPLIT_STEP)["time_split"] == 3
    assert with_time_split("mlp", {}, 2, 0.25) == {"time_split": 2, "split_step": 0.25}
    # an ordinary network's config (and so its checkpoints) has no such key; a split one records both
    assert "time_split" not in ordinary("DiT-Nano").config and "split_step" not in ordinary("mlp").config
    assert split_copy(ordinary("mlp"), 1).config["time_split"] == 1
    assert isinstance(build_network(network_spec(split_copy(ordinary("DiT-Nano"), 2))), DiT)


@pytest.mark.parametrize(
    ("name", "k"), [("DiT-Nano", 0), ("DiT-Nano", 3), ("DiT-Nano", 1.5), ("mlp", -1), ("mlp", 4), ("mlp", True)]
)
def test_bad_splits_are_refused_in_one_line(name, k):
    args = {"time_split": k} if name != "mlp" else {"time_split": k, "depth": 4}
    with pytest.raises(UserError, match=r"time_split of this (DiT|MLP) must be an integer in \[") as err:
        build_model(name, SHAPES[name], 0, args)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="time_split"):
        MLP(dim=3, depth=2, time_split=2)
