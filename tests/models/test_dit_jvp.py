"""The DiT's own tangent-carrying pass equals ``torch.func.jvp`` of its forward (float64, random weights), for every
block option: both step inputs, the authors' quirks, labels or none, and the conditioning split between the start
time and the end time (Decoupled MeanFlow's ``time_split``)."""

import pytest
import torch
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from shortcut_models.models import STEP_INPUTS
from shortcut_models.models.dit import DiT
from shortcut_models.objectives.forward_mode import network_jvp
from shortcut_models.objectives.meanflow_identity import identity_target


def random_dit(quirks: bool, num_classes: int = 10, step_input: str = "level", time_split: int | None = None) -> DiT:
    """DiT-Nano on 8x8x2 inputs with every weight random (the zero-initialised layers would hide errors)."""
    torch.manual_seed(0)
    model = DiT.from_preset(
        "DiT-Nano", 8, 2, num_classes, authors_quirks=quirks, step_input=step_input, time_split=time_split
    ).double()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model


def point(batch: int = 5, num_classes: int = 10):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 2, 8, 8, generator=g, dtype=torch.float64)
    t = torch.rand(batch, generator=g, dtype=torch.float64)
    d = torch.rand(batch, generator=g, dtype=torch.float64) * (1 - t) + 1e-3
    y = torch.randint(0, num_classes + 1, (batch,), generator=g)
    tangents = tuple(torch.randn(a.shape, generator=g, dtype=torch.float64) for a in (x, t, d))
    return (x, t, d, y), tangents


def generic_jvp(model, primals, tangents):
    x, t, d, y = primals
    with sdpa_kernel([SDPBackend.MATH]):
        return jvp(lambda a, b, c: model(a, b, c, y), (x, t, d), tangents)


@pytest.mark.parametrize("time_split", [None, 1])
@pytest.mark.parametrize("num_classes", [0, 10])
@pytest.mark.parametrize("step_input", STEP_INPUTS)
@pytest.mark.parametrize("quirks", [False, True])
def test_own_product_equals_forward_mode_autodiff(quirks, step_input, num_classes, time_split):
    model = random_dit(quirks, num_classes, step_input, time_split)
    primals, tangents = point(num_classes=num_classes)
    out, tangent = model.jvp(primals, tangents)
    ref_out, ref_tangent = generic_jvp(model, primals, tangents)
    assert ref_tangent.abs().max() > 1  # a real derivative, not the zero of an initialised head
    # outputs reach ~20 (every weight random): relative to their size too (the two orders of the float64
    # operations differ by ~4e-14 here)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tangent, ref_tangent, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("time_split", [None, 2])
@pytest.mark.parametrize("step_input", STEP_INPUTS)
@pytest.mark.parametrize("which", [0, 1, 2])
def test_each_input_direction_alone(which, step_input, time_split):
    """Tangent along x, t or d alone: each enters through its own layers (patches, time, step size, the
    latter as -log2 d or as d itself; split, d moves the end time of the late layers)."""
    model, (primals, tangents) = random_dit(False, step_input=step_input, time_split=time_split), point()
    only = tuple(tg if i == which else torch.zeros_like(tg) for i, tg in enumerate(tangents))
    tangent = model.jvp(primals, only)[1]
    assert tangent.abs().max() > 1e-3
    torch.testing.assert_close(tangent, generic_jvp(model, primals, only)[1], rtol=1e-10, atol=1e-10)


def test_network_jvp_looks_through_wrappers_and_falls_back():
    """DDP-like ``module`` wrappers are looked through; a network without its own product uses torch.func."""
    model, (primals, tangents) = random_dit(False), point()

    class Wrapper(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args):
            return self.module(*args)

    expected = generic_jvp(model, primals, tangents)[1]
    torch.testing.assert_close(network_jvp(Wrapper(model), primals, tangents), expected, rtol=1e-10, atol=1e-10)
    plain = lambda *args: model(*args)  # noqa: E731  (no jvp attribute: the generic path)
    torch.testing.assert_close(network_jvp(plain, primals, tangents), expected, rtol=1e-10, atol=1e-10)


def test_meanflow_target_on_a_dit_is_unchanged_by_the_own_product():
    model, ((x, t, d, y), _) = random_dit(False), point()
    v = torch.randn_like(x)
    target = identity_target(model, x, t, d, v, y)
    du = generic_jvp(model, (x, t, d, y), (v, torch.ones_like(t), -torch.ones_like(d)))[1]
    torch.testing.assert_close(target, v + d[:, None, None, None] * du, rtol=1e-10, atol=1e-10)


def test_own_product_with_the_guidance_input():
    """A DiT built with the guidance input (iMF): its product takes the guidance (no tangent) as forward does."""
    torch.manual_seed(0)
    model = DiT.from_preset("DiT-Nano", 8, 2, num_classes=10, guidance_input=True).double()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    primals, tangents = point()
    x, t, d, y = primals
    guidance = torch.stack([torch.linspace(1, 7, 5), torch.full((5,), 0.2), torch.full((5,), 0.7)], dim=1)
    out, tangent = model.jvp(primals, tangents, guidance)
    with sdpa_kernel([SDPBackend.MATH]):
        ref_out, ref_tangent = jvp(lambda a, b, c: model(a, b, c, y, guidance=guidance), (x, t, d), tangents)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tangent, ref_tangent, rtol=1e-10, atol=1e-10)
    assert (ref_out - model(x, t, d, y)).abs().max() > 1e-3  # the guidance matters
    torch.testing.assert_close(
        network_jvp(model, primals, tangents, guidance=guidance), ref_tangent, rtol=1e-10, atol=1e-10
    )
