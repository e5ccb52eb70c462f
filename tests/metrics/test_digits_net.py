"""The digits feature network behind fd-digits: accuracy, cache, determinism, and a small data floor."""

import pytest
import torch

from shortcut_models.data import digits
from shortcut_models.metrics import features
from shortcut_models.metrics.features import (
    DigitsNetRecipe,
    FeatureExtractor,
    digits_feature_net_path,
    get_feature_extractor,
    load_digits_feature_net,
    test_accuracy,
)
from shortcut_models.metrics.frechet import FeatureStats, frechet_distance_from_stats


@pytest.fixture(scope="session")
def digits_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("shortcut_models_cache")


@pytest.fixture(scope="session")
def digits_net(digits_cache):
    return load_digits_feature_net(cache_dir=digits_cache)  # trains once (seconds), then cached


def _stats(net, images):
    return FeatureStats().update(net(images))


def test_digits_net_accuracy(digits_net):
    assert test_accuracy(digits_net) >= 0.97


def test_cache_is_reused(digits_net, digits_cache, monkeypatch):
    path = digits_feature_net_path(digits_cache)
    assert path.is_file() and path.suffix == ".safetensors"
    assert [p.name for p in digits_cache.iterdir()] == [path.name]  # no temporary files left
    mtime = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached network should have been loaded, not retrained")

    monkeypatch.setattr(features, "train_digits_feature_net", no_training)
    again = load_digits_feature_net(cache_dir=digits_cache)
    assert path.stat().st_mtime_ns == mtime
    for (k, a), (_, b) in zip(digits_net.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    assert get_feature_extractor("fd-digits", cache_dir=digits_cache).recipe == digits_net.recipe


def test_changed_recipe_changes_cache_file(digits_cache):
    base = DigitsNetRecipe()
    assert DigitsNetRecipe().key() == base.key()
    keys = {
        base.key(),
        DigitsNetRecipe(epochs=base.epochs + 1).key(),
        DigitsNetRecipe(seed=1).key(),
        DigitsNetRecipe(feature_dim=128).key(),
        DigitsNetRecipe(split_version=base.split_version + 1).key(),
    }
    assert len(keys) == 5
    assert digits_feature_net_path(digits_cache, DigitsNetRecipe(seed=1)) != digits_feature_net_path(digits_cache)
    assert base.key() in digits_feature_net_path(digits_cache).name


def test_default_cache_dir_rule(monkeypatch, tmp_path):
    monkeypatch.setenv("SHORTCUT_MODELS_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert features.default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("SHORTCUT_MODELS_CACHE")
    assert features.default_cache_dir() == tmp_path / "xdg" / "shortcut_models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert features.default_cache_dir() == tmp_path / "home" / ".cache" / "shortcut_models"


def test_features_are_deterministic(digits_net):
    x, _ = digits.load_digits("test")
    f1, f2 = digits_net(x), digits_net.features(x)
    assert f1.shape == (300, digits_net.dim) and f1.dtype == torch.float32
    assert torch.equal(f1, f2) and not f1.requires_grad
    assert digits_net.logits(x[:7]).shape == (7, 10)
    assert isinstance(digits_net, FeatureExtractor) and digits_net.name == "fd-digits"
    with pytest.raises(ValueError):
        digits_net(torch.zeros(2, 3, 8, 8))


def test_data_floor_is_small_against_noise(digits_net):
    x_tr, _ = digits.load_digits("train")
    x_te, _ = digits.load_digits("test")
    noise = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    train = _stats(digits_net, x_tr)
    floor = frechet_distance_from_stats(train, _stats(digits_net, x_te))
    to_noise = frechet_distance_from_stats(train, _stats(digits_net, noise))
    assert floor < 0.05 * to_noise, (floor, to_noise)
