"""Files given to the evaluation (Inception weights, reference statistics) never run code: a planted
pickle payload is refused in one line, having run nothing."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from shortcut_models.errors import UserError
from shortcut_models.evaluation.image_metrics import fid_extractor, fid_metric


class Payload:
    """Pickles into a call that creates ``marker``: what an unsafe load of a planted file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_planted_inception_weights_are_refused(tmp_path):
    if importlib.util.find_spec("torch_fidelity") is None:  # its package __init__ may not import (torchvision)
        pytest.skip("torch-fidelity is not installed")
    marker, weights = tmp_path / "ran", tmp_path / "inception.pth"
    torch.save({"conv.weight": torch.zeros(1), "extra": Payload(marker)}, weights)
    with pytest.raises(UserError, match="cannot load Inception weights"):
        fid_extractor(str(weights), "cpu")
    assert not marker.exists()


def test_reference_statistics_holding_objects_are_refused(tmp_path):
    marker, stats = tmp_path / "ran", tmp_path / "ref.npz"
    np.savez(stats, mu=np.zeros(2), sigma=np.array([Payload(marker)], dtype=object))
    with pytest.raises(UserError, match="cannot read reference statistics"):
        fid_metric(str(stats), None, "cpu")
    assert not marker.exists()
    stats.write_bytes(b"not a zip file")
    with pytest.raises(UserError, match="cannot read reference statistics"):
        fid_metric(str(stats), None, "cpu")
