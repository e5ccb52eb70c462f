"""The interpolation path between noise and data (ALGORITHM.md)."""

import torch

from shortcut_models import path

EPS = 1e-5


def test_path_endpoints():
    x0, x1 = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.allclose(path.interpolate(x0, x1, torch.zeros(4)), x0)
    assert torch.allclose(path.interpolate(x0, x1, torch.ones(4)), x1 + EPS * x0)
