"""The digits data: sizes, value range, the fixed stratified split, and the uint8 pixel mapping."""

import hashlib

import numpy as np
import pytest
import torch

from shortcut_models.data import digits

# SHA-256 of the test indices (int64, little-endian) of split version 1: the split must never change.
TEST_SPLIT_SHA256 = "51b6ca6b9df7d509ebbe696abe3b428e0bb4d2fb11137412b02ff9d4d5017889"


def test_counts_shapes_and_dtypes():
    sizes = {"train": 1497, "test": 300, "all": 1797}
    for split, n in sizes.items():
        x, y = digits.load_digits(split)
        assert x.shape == (n, *digits.IMAGE_SHAPE) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
    assert digits.NUM_CLASSES == 10 and digits.IMAGE_SHAPE == (1, 8, 8)


def test_value_range_and_scaling():
    from sklearn.datasets import load_digits as sk_load

    x, y = digits.load_digits("all")
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    raw = sk_load()
    np.testing.assert_array_equal(x[:, 0].numpy(), raw.images.astype(np.float32) / 8 - 1)
    np.testing.assert_array_equal(y.numpy(), raw.target)
    assert set(y.tolist()) == set(range(10))


def test_split_is_a_disjoint_cover_and_fixed():
    train, test = digits.split_indices("train"), digits.split_indices("test")
    assert len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    assert hashlib.sha256(np.asarray(test, "<i8").tobytes()).hexdigest() == TEST_SPLIT_SHA256


def test_split_rows_match_indices_and_repeat():
    x_all, y_all = digits.load_digits("all")
    x_te, y_te = digits.load_digits("test")
    idx = torch.from_numpy(digits.split_indices("test"))
    assert torch.equal(x_te, x_all[idx]) and torch.equal(y_te, y_all[idx])
    x2, y2 = digits.load_digits("test")
    assert torch.equal(x_te, x2) and torch.equal(y_te, y2)
    x2[0] = 5.0  # returned tensors are fresh copies
    assert torch.equal(digits.load_digits("test")[0], x_te)


def test_split_is_stratified():
    _, y_te = digits.load_digits("test")
    _, y_tr = digits.load_digits("train")
    assert torch.bincount(y_te, minlength=10).tolist() == [digits.TEST_PER_CLASS] * 10
    _, y_all = digits.load_digits("all")
    assert torch.equal(torch.bincount(y_tr, minlength=10) + 30, torch.bincount(y_all, minlength=10))


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="train, test, all"):
        digits.load_digits("validation")


def test_uint8_round_trip():
    u = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
    x = digits.from_uint8(u)
    assert x.shape == (5, 3, 8, 8) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    np.testing.assert_array_equal(digits.to_uint8(x), u)

    images, _ = digits.load_digits("test")
    pixels = digits.to_uint8(images)
    assert pixels.shape == (300, 8, 8, 1) and pixels.dtype == np.uint8
    assert pixels.min() == 0 and pixels.max() == 255
    back = digits.from_uint8(pixels)
    assert float((back - images).abs().max()) <= 1 / 255 + 1e-6


def test_to_uint8_clips_and_rounds():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.5]).view(1, 5, 1, 1)
    assert digits.to_uint8(x).ravel().tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(ValueError):
        digits.to_uint8(torch.zeros(8, 8))
    with pytest.raises(ValueError):
        digits.from_uint8(np.zeros((1, 8, 8, 1), dtype=np.float32))
