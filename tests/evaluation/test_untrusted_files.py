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


def test_planted_dinov2_weights_are_refused_through_the_cli(tmp_path, capsys):
    """torch.load(weights_only=True): the payload is refused (exit 2, one line) and has not run."""
    from shortcut_models.cli import main
    from shortcut_models.metrics.dinov2 import random_state_dict

    marker, weights = tmp_path / "ran", tmp_path / "dinov2_vitl14_pretrain.pth"
    torch.save({**random_state_dict(depth=1, grid=2), "extra": Payload(marker)}, weights)
    argv = ["ref-stats", "--data", "digits", "--metric", "fd-dinov2", "--dinov2-weights", str(weights)]
    assert main([*argv, "--out", str(tmp_path / "ref.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot load DINOv2 weights" in err, err
    assert not marker.exists() and not (tmp_path / "ref.npz").exists()
