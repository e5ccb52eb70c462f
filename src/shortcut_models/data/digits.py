"""scikit-learn's handwritten digits as a small image data set, with a fixed train/test split.

The data ship inside scikit-learn (``sklearn.datasets.load_digits``): 1,797 grey images of 8x8
pixels with integer values 0..16 and labels 0..9. Nothing is downloaded.

Layout returned by :func:`load_digits`: images float32 ``[N, 1, 8, 8]`` scaled to [-1, 1] by
``x / 8 - 1`` (0 -> -1, 16 -> +1), labels int64 ``[N]`` in 0..9. Rows keep the order of the
original data set (ascending original index) within each split.

The split (version ``SPLIT_VERSION = 1``), exactly:

1. One ``numpy.random.RandomState(SPLIT_SEED)`` with ``SPLIT_SEED = 20241011``. ``RandomState`` is
   used on purpose: NumPy freezes its stream, so the split cannot change with NumPy versions.
2. For each class c = 0, 1, ..., 9 in that order: take the original indices of class c in
   ascending order, draw ``perm = rs.permutation(len(indices))`` from that single RandomState, and
   put ``indices[perm[:TEST_PER_CLASS]]`` (``TEST_PER_CLASS = 30``) in the test split.
3. Everything else is the train split. Both index lists are then sorted ascending.

So the test split has 300 images, 30 per class (stratified; each class holds 174 to 183 images,
so about 1/6 of each), and the train split the remaining 1,497.
The rule is pinned by a checksum in the tests; changing it means a new ``SPLIT_VERSION``.

Pixel mapping used by the uint8 helpers (the layout common FID tools read):
``u = clamp(floor((x + 1) * 127.5 + 0.5), 0, 255)`` for x in [-1, 1], and back ``x = u / 127.5 - 1``.
Going uint8 -> float -> uint8 is exact; float -> uint8 -> float moves a value by at most 1/255.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..images import from_uint8, to_uint8  # noqa: F401  (re-exported: the pixel mapping of the package)

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)
SPLIT_VERSION = 1
SPLIT_SEED = 20241011
TEST_PER_CLASS = 30
SPLITS = ("train", "test", "all")


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)  # [N, 8, 8], values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@lru_cache(maxsize=1)
def _split() -> tuple[np.ndarray, np.ndarray]:
    _, labels = _raw()
    rs = np.random.RandomState(SPLIT_SEED)
    test_parts = []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        perm = rs.permutation(len(idx))
        test_parts.append(idx[perm[:TEST_PER_CLASS]])
    test = np.sort(np.concatenate(test_parts))
    mask = np.ones(len(labels), dtype=bool)
    mask[test] = False
    train = np.flatnonzero(mask)
    train.setflags(write=False)
    test.setflags(write=False)
    return train, test


def split_indices(split: str = "train") -> np.ndarray:
    """Indices into scikit-learn's digits array of ``split`` ("train", "test" or "all"), ascending."""
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; choose from {', '.join(SPLITS)}")
    if split == "all":
        return np.arange(len(_raw()[1]))
    train, test = _split()
    return (train if split == "train" else test).copy()


def load_digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Images float32 ``[N, 1, 8, 8]`` in [-1, 1] and labels int64 ``[N]`` of ``split``.

    ``split`` is "train" (1,497 images), "test" (300, 30 per class) or "all" (1,797); anything else
    raises ValueError. Each call returns fresh tensors (safe to modify).
    """
    idx = split_indices(split)
    images, labels = _raw()
    x = torch.from_numpy(images[idx] / np.float32(8.0) - np.float32(1.0)).unsqueeze(1).contiguous()
    y = torch.from_numpy(labels[idx].copy())
    return x, y
