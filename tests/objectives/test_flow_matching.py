"""Closed-form check of the flow-matching target (ALGORITHM.md)."""

import torch

from shortcut_models.objectives import FlowMatching

EPS = 1e-5


def test_flow_targets_closed_form(make_batch):
    x1, x0, g = make_batch(32, (2, 4, 4))
    tg = FlowMatching().targets(None, x1, None, g, x0=x0)
    t = tg.t.view(-1, 1, 1, 1)
    assert torch.allclose(tg.x_t, (1 - (1 - EPS) * t) * x0 + t * x1, atol=1e-6)
    assert torch.allclose(tg.v, x1 - (1 - EPS) * x0, atol=1e-6)
    assert torch.equal(tg.d, torch.full((32,), 1 / 128))
    assert torch.equal(tg.t * 128, (tg.t * 128).round()) and tg.t.min() >= 0 and tg.t.max() <= 127 / 128
    assert (tg.kind == 0).all()
    assert torch.equal(tg.y, torch.zeros(32, dtype=torch.long))  # unconditional: null label 0
