"""The synthetic data source used by the GPU benchmarks: deterministic, and its name is validated."""

import pytest
import torch

from shortcut_models.data import build_source
from shortcut_models.errors import UserError


def test_synthetic_source_is_deterministic_and_validated():
    src = build_source("synthetic:4x8x8:10")
    assert src.shape == (4, 8, 8) and src.num_classes == 10
    x, y = src.batch(3, 16, 0)
    x2, y2 = src.batch(3, 16, 0)
    assert torch.equal(x, x2) and torch.equal(y, y2) and x.shape == (16, 4, 8, 8)
    assert not torch.equal(src.batch(4, 16, 0)[0], x)
    assert 0.8 < x.std().item() < 1.2 and int(y.max()) < 10
    assert build_source("synthetic:3x4x4").num_classes == 0
    for bad in ("synthetic:", "synthetic:4xAx8", "synthetic:4x8x8:-1", "synthetic:0x8x8", "synthetic:4x8x8:3:1"):
        with pytest.raises(UserError, match="synthetic:CxHxW"):
            build_source(bad)
