"""A network called at conditionings known ahead: the calls equal the plain calls, with the conditioning
computed ahead (DiT) or not (any other network, or a compiled one), in live reflow's steps and in the two
half steps of shortcut and progressive distillation."""

import pytest
import torch
from torch import nn

from shortcut_models.models.dit import DiT
from shortcut_models.models.mlp import MLP
from shortcut_models.objectives.fixed_conditioning import calls_at, calls_at_times
from shortcut_models.objectives.progressive_distillation import ProgressiveDistillation
from shortcut_models.objectives.shortcut import Shortcut

TIMES = [i / 8 for i in range(8)]


def _perturbed(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.double()


class Counting(nn.Module):
    """Counts the plain calls of the network it holds (and hides its other methods, as a wrapper does)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, *args):
        self.calls += 1
        return self.net(*args)


@pytest.mark.parametrize("kind", ["dit", "mlp"])
def test_calls_equal_plain_calls_along_a_trajectory(kind):
    torch.manual_seed(0)
    if kind == "dit":
        net = _perturbed(DiT.from_preset("DiT-Nano", 8, 1, 10))
        x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    else:
        net = _perturbed(MLP(dim=2, width=32, depth=2, num_classes=10))
        x = torch.randn(5, 2, dtype=torch.float64)
    d = torch.full((5,), 1 / 128, dtype=torch.float64)
    y = torch.tensor([0, 3, 10, 10, 7])
    with torch.no_grad():
        ahead, plain = x, x
        for s, call in zip(TIMES, calls_at_times(net, TIMES, d, y)):
            ahead = ahead + call(ahead) / 8
            plain = plain + net(plain, torch.full_like(d, s), d, y) / 8
    torch.testing.assert_close(ahead, plain, rtol=1e-12, atol=1e-12)
    assert not torch.equal(ahead, x)


def test_a_wrapped_or_compiled_network_is_called_as_it_is():
    net = _perturbed(DiT.from_preset("DiT-Nano", 8, 1, 0))
    wrapped = Counting(net)
    d, y = torch.full((2,), 0.5, dtype=torch.float64), torch.zeros(2, dtype=torch.long)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    calls = calls_at_times(wrapped, TIMES[:3], d, y)
    for call in calls:
        call(x)
    assert wrapped.calls == 3
    wrapped._orig_mod = net  # what torch.compile's wrapper holds: its compiled forward is what runs
    wrapped.forward_modulated = net.forward_modulated
    calls_at_times(wrapped, TIMES[:2], d, y)[1](x)
    assert wrapped.calls == 4


def test_calls_of_different_sizes_and_conditionings_equal_plain_calls():
    net = _perturbed(DiT.from_preset("DiT-Nano", 8, 1, 10))
    g = torch.Generator().manual_seed(1)
    conditions = [
        (torch.rand(rows, generator=g, dtype=torch.float64), torch.rand(rows, generator=g, dtype=torch.float64), y)
        for rows, y in ((3, torch.tensor([1, 10, 4])), (5, torch.tensor([2, 2, 10, 0, 9])))
    ]
    with torch.no_grad():
        for (t, d, y), call in zip(conditions, calls_at(net, conditions)):
            x = torch.randn(len(t), 1, 8, 8, generator=g, dtype=torch.float64)
            torch.testing.assert_close(call(x), net(x, t, d, y), rtol=1e-12, atol=1e-12)


def _half_step_rows(rows: int = 8):
    g = torch.Generator().manual_seed(2)
    x_t = torch.randn(rows, 1, 8, 8, generator=g, dtype=torch.float64)
    d = 2.0 ** -torch.randint(0, 7, (rows,), generator=g).double()
    t = torch.rand(rows, generator=g, dtype=torch.float64) * (1 - d)
    return x_t, t, d, torch.tensor([3, 10, 1, 7, 7, 0, 10, 5])[:rows]


@pytest.mark.parametrize("guided", [None, torch.tensor([0, 3, 6])])
def test_shortcut_half_steps_with_conditioning_ahead_equal_plain_calls(guided):
    """Guided rows' unguided twins ride in the same calls; the targets are those of the plain calls.

    Guidance moves exactly the guided rows whose label is a real class: on a row with the null label (10)
    the conditional and unconditional velocities are the same computation, so v_u + w (v_c - v_u) equals
    the unguided velocity in exact arithmetic (in float64 up to rounding, which may differ with where the
    twin sits in the batch: compared within 1e-10, while guidance moves a real-label row by about 1e-2)."""
    net = _perturbed(DiT.from_preset("DiT-Nano", 8, 1, 10))
    objective = Shortcut(num_classes=10, cfg_scale=1.5)
    x_t, t, d, y = _half_step_rows()
    with torch.no_grad():
        ahead = objective.teacher_target(net, x_t, t, d, y, guided)
        counted = Counting(net)
        plain = objective.teacher_target(counted, x_t, t, d, y, guided)
    assert counted.calls == 2
    torch.testing.assert_close(ahead, plain, rtol=1e-12, atol=1e-12)
    if guided is not None:  # guidance moved the guided rows with a real label (and only those)
        unguided = objective.teacher_target(net, x_t, t, d, y)
        change = (ahead - unguided).flatten(1).abs().amax(1)
        moves = [i in guided.tolist() and int(y[i]) != 10 for i in range(8)]
        assert moves == [True, False, False, True, False, False, False, False]  # row 6: guided, null label
        assert (change[moves] > 1e-3).all(), change
        assert (change[[not m for m in moves]] < 1e-10).all(), change


def test_progressive_distillation_half_steps_with_conditioning_ahead_equal_plain_calls():
    net = _perturbed(DiT.from_preset("DiT-Nano", 8, 1, 10))
    objective = ProgressiveDistillation(num_classes=10)
    x_t, t, _, y = _half_step_rows()
    x0 = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        ahead = objective.build(net, x0, x_t, t, y, 0.25)
        plain = objective.build(Counting(net), x0, x_t, t, y, 0.25)
    torch.testing.assert_close(ahead.v, plain.v, rtol=1e-12, atol=1e-12)
    assert ahead.v.abs().amax() > 0
