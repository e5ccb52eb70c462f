"""A network called along fixed times: the calls equal the plain calls, with the conditioning computed
ahead (DiT) or not (any other network, or a compiled one)."""

import pytest
import torch
from torch import nn

from shortcut_models.models.dit import DiT
from shortcut_models.models.mlp import MLP
from shortcut_models.objectives.fixed_conditioning import calls_at_times

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
