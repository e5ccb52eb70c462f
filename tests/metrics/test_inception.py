"""The Inception feature extractor behind FID: a missing weights file, random and local weights, no download."""

import importlib.util
import sys

import pytest
import torch

from shortcut_models.metrics import features
from shortcut_models.metrics.features import FeatureExtractor, InceptionFeatures, get_feature_extractor

HAVE_TORCH_FIDELITY = importlib.util.find_spec("torch_fidelity") is not None


def test_inception_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        InceptionFeatures(weights=tmp_path / "nope.pth")


@pytest.mark.skipif(not HAVE_TORCH_FIDELITY, reason="torch-fidelity is not installed")
def test_inception_random_weights_shape_and_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_download(*args, **kwargs):
        raise AssertionError("tests must not download anything")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    features._inception_network_class()  # imports torch-fidelity's module, which holds its own reference
    module = sys.modules["torch_fidelity.feature_extractor_inceptionv3"]
    monkeypatch.setattr(module, "load_state_dict_from_url", no_download)
    extractor = get_feature_extractor("fid", weights="random")
    assert isinstance(extractor, FeatureExtractor) and extractor.dim == 2048
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats = extractor(images)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32 and torch.isfinite(feats).all()
    assert extractor(images[:1, :1]).shape == (1, 2048)  # grey images are repeated to RGB
    assert not (tmp_path / "torch_home").exists()

    # weights from a local file (.pth and .safetensors) load into the same architecture
    from safetensors.torch import save_file

    state = {k: v + 0.01 if v.is_floating_point() else v.clone() for k, v in extractor.network.state_dict().items()}
    torch.save(state, tmp_path / "w.pth")
    save_file(state, str(tmp_path / "w.safetensors"))
    for weights in (tmp_path / "w.pth", str(tmp_path / "w.safetensors")):
        loaded = InceptionFeatures(weights=weights)
        for k, v in loaded.network.state_dict().items():
            assert torch.equal(v, state[k]), k
