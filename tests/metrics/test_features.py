"""The feature extractor factory and the 2-D point features."""

import pytest
import torch

from shortcut_models.metrics.features import Coordinates2D, get_feature_extractor


def test_coordinates_and_factory():
    coords = get_feature_extractor("coords")
    assert isinstance(coords, Coordinates2D) and coords.dim == 2 and coords.name == "coords"
    pts = torch.randn(5, 2, dtype=torch.float64)
    assert torch.equal(coords(pts), pts.float())
    with pytest.raises(ValueError):
        coords(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="fd-digits, fid, fd-dinov2, coords"):
        get_feature_extractor("kid")
