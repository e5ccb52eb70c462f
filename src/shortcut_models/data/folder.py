"""Image folders: discovery of files and labels, and the ADM center-crop preprocessing.

Layouts (``scan_folder``):
- class folders: ``root`` has no image directly inside it, and some of its subdirectories hold
  images (searched recursively inside each). Each such subdirectory is one class; classes are
  sorted by name and labelled 0..C-1. Subdirectories without images are ignored.
- flat: otherwise. Every image under ``root`` (recursively) is used, unconditional: label 0 and
  no class names (num_classes = 0).
Files are recognised by extension (png, jpg, jpeg, bmp, webp; any case); hidden files and
directories (name starting with '.') are skipped. The order is sorted by relative path, so it is
the same on every machine.

Images come out as float ``[3, R, R]`` in [-1, 1] (``u / 127.5 - 1``, as in images.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..images import from_uint8

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})


class UnreadableImage(ValueError):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _images_under(directory: Path) -> list[Path]:
    """All image files below ``directory`` (recursive, hidden entries skipped), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if _is_image(f)]
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def scan_folder(root: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """``([(path, label), ...], class_names)`` of an image folder; ``class_names == []`` when flat."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {str(root)!r} does not exist or is not a directory")
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    if not any(e.is_file() and _is_image(e.name) for e in entries):
        classes = []
        for e in entries:
            if e.is_dir() and not e.name.startswith("."):
                files = _images_under(Path(e.path))
                if files:
                    classes.append((e.name, files))
        if classes:
            items = [(path, label) for label, (_, files) in enumerate(classes) for path in files]
            return items, [name for name, _ in classes]
    return [(path, 0) for path in _images_under(root)], []


def load_image_uint8(path: str | Path, resolution: int) -> np.ndarray:
    """uint8 ``[R, R, 3]`` pixels by the ADM recipe; raises :class:`UnreadableImage`.

    RGB; while the short side is at least 2R, halve the image with a box filter; resize so that
    the short side is R (bicubic); crop the central R x R square.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")  # forces the full decode: truncated files fail here
        while min(img.size) >= 2 * resolution:
            img = img.resize((img.width // 2, img.height // 2), resample=Image.Resampling.BOX)
        scale = resolution / min(img.size)
        size = (max(resolution, round(img.width * scale)), max(resolution, round(img.height * scale)))
        img = img.resize(size, resample=Image.Resampling.BICUBIC)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UnreadableImage(path, f"{type(exc).__name__}: {reason}") from None
    pixels = np.asarray(img, dtype=np.uint8)
    top = (pixels.shape[0] - resolution) // 2
    left = (pixels.shape[1] - resolution) // 2
    return np.ascontiguousarray(pixels[top : top + resolution, left : left + resolution])


def load_image(path: str | Path, resolution: int) -> torch.Tensor:
    """Float ``[3, R, R]`` in [-1, 1] (ADM center crop); raises :class:`UnreadableImage`."""
    return from_uint8(load_image_uint8(path, resolution)[None])[0]
