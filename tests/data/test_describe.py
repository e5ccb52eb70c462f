"""describe_source: shapes and classes of every kind of data without loading it, equal to build_source(name).info."""

import shutil

import pytest

from shortcut_models.data import SourceInfo, build_source, describe_source
from shortcut_models.data.latents import write_random_cache
from shortcut_models.errors import UserError


@pytest.mark.parametrize(
    "name, shape, classes",
    [
        ("checkerboard", (2,), 0),
        ("eight_gaussians", (2,), 8),
        ("moons", (2,), 2),
        ("spirals", (2,), 2),
        ("digits", (1, 8, 8), 10),
        ("synthetic:4x32x32", (4, 32, 32), 0),
        ("synthetic:3x8x8:7", (3, 8, 8), 7),
    ],
)
def test_plain_sources(name, shape, classes):
    info = describe_source(name)
    assert info == SourceInfo(name, shape, classes, shape, None, None)
    assert build_source(name).info == info


def test_latent_cache_from_its_manifest_only(tmp_path):
    cache = tmp_path / "cache"
    write_random_cache(cache, 6, latent_shape=(4, 2, 2), shard_size=2, num_classes=3)
    name = f"latents:{cache}"
    info = describe_source(name)
    assert info == SourceInfo(name, (4, 2, 2), 3, (3, 16, 16), "random", 1.0)
    assert build_source(name).info == info
    for shard in cache.glob("shard_*.safetensors"):
        shard.unlink()
    assert describe_source(name) == info
    with pytest.raises(UserError, match="shard_00000.safetensors is missing"):
        build_source(name)
    shutil.rmtree(cache)
    with pytest.raises(UserError, match="no latent cache"):
        describe_source(name)


def test_unknown_and_malformed_names():
    for name in ("nope", "Digits", ""):
        with pytest.raises(UserError, match="unknown data") as describe_err:
            describe_source(name)
        with pytest.raises(UserError) as build_err:
            build_source(name)
        assert str(describe_err.value) == str(build_err.value) and "\n" not in str(describe_err.value)
    with pytest.raises(UserError, match="bad synthetic data"):
        describe_source("synthetic:4xAx4")
