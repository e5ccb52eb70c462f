"""Fixtures of the evaluation tests: local weights files of the metric networks (no download)."""

import pytest
import torch


@pytest.fixture
def inception_weights(tmp_path):
    """A local Inception-v3 weights file with random weights (FID without a download); skips the test
    without torch-fidelity."""
    from shortcut_models.metrics.inception import InceptionFeatures

    try:
        network = InceptionFeatures(weights="random").network
    except ImportError:
        pytest.skip("torch-fidelity is not installed")
    weights = tmp_path / "inception.pth"
    torch.save(network.state_dict(), weights)
    return weights


@pytest.fixture
def dinov2_weights(tmp_path):
    """A tiny DINOv2 weights file in the official layout (width 64, one block, a 4x4 stored grid, random
    values): fd-dinov2 without the real file, in a fraction of a second per batch."""
    from shortcut_models.metrics.dinov2 import random_state_dict

    weights = tmp_path / "dinov2_tiny.pth"
    torch.save(random_state_dict(width=64, depth=1, grid=4, seed=5), weights)
    return weights
