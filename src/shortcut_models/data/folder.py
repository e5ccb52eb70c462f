"""Image folders: discovery of files and labels, and the ADM center-crop preprocessing.

Layouts (``scan_folder``):
- class folders: ``root`` has no image directly inside it, and some of its subdirectories hold
  images (searched recursively inside each). Each such subdirectory is one class; classes are
  sorted by name and labelled 0..C-1. Subdirectories without images are ignored.
- flat: otherwise. Every image under ``root`` (recursively) is used, unconditional: label 0 and
  no class names (num_classes = 0).
Files are recognised by extension (png, jpg, jpeg, bmp, webp, tif, tiff; any case); hidden files
and directories (name starting with '.') are skipped. Links to directories are followed, but each
real directory is scanned once, under its own name before any link's: a link to a directory
already scanned (a loop such as ``sub/up -> ..``, or a second name for one folder) is skipped with
a warning. The order is sorted by
relative path, so it is the same on every machine.

Pixels: 8-bit images as they are; 16-bit images (PNG, TIFF) scaled from 0..65535; floating-point
images (TIFF) from [0, 1]. An image with float values outside [0, 1] or of more than
:data:`MAX_PIXELS` pixels (checked from the header, before decoding) is skipped and named.
Images come out as float ``[3, R, R]`` in [-1, 1] (``u / 127.5 - 1``, as in images.py).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..images import from_uint8
from ..validation import check_int

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
MAX_PIXELS = 8192 * 8192  # larger images are skipped unread: decoding one takes hundreds of MB per thread
MAX_RESOLUTION = 4096  # the side of the square that images are cropped and resized to
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


class UnreadableImage(ValueError):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class _Refused(ValueError):
    """An image this module declines to decode (too large, pixel values out of range)."""


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def check_resolution(resolution: object) -> int:
    """``resolution`` as an int in 1..MAX_RESOLUTION; ValueError naming it otherwise."""
    return check_int("resolution", resolution, 1, MAX_RESOLUTION)


def check_folder(root: str | Path) -> Path:
    """``root`` as a Path if it is a directory; UserError otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {str(root)!r} does not exist or is not a directory")
    return root


def _first_visit(directory: str | Path, seen: set[tuple[int, int]]) -> bool:
    """Whether the real directory behind ``directory`` is new to ``seen`` (which then holds it)."""
    try:
        st = os.stat(directory)  # follows links: the real directory
    except OSError:
        return False
    key = (st.st_dev, st.st_ino)
    if key in seen:
        warnings.warn(f"skipping {directory}: it leads to a directory already scanned", stacklevel=5)
        return False
    seen.add(key)
    return True


def _walk(top: str | Path, seen: set[tuple[int, int]]) -> tuple[list[Path], list[str]]:
    """Image files in the tree of real directories at ``top`` (hidden entries skipped), and the links
    to directories met on the way (not followed)."""
    files, links = [], []
    for dirpath, dirnames, filenames in os.walk(top):
        keep = []
        for d in sorted(dirnames):
            path = os.path.join(dirpath, d)
            if d.startswith("."):
                continue
            if os.path.islink(path):
                links.append(path)
            elif _first_visit(path, seen):
                keep.append(d)
        dirnames[:] = keep
        files += [Path(dirpath) / f for f in filenames if _is_image(f)]
    return files, links


def _images_under(root: Path) -> list[Path]:
    """Every image file below ``root``, each real directory scanned once: first the directories
    themselves, then the links to directories (in path order), each followed when it leads to a
    directory not scanned yet."""
    seen: set[tuple[int, int]] = set()
    _first_visit(root, seen)
    files, pending = _walk(root, seen)
    while pending:
        link = pending.pop(0)
        if _first_visit(link, seen):
            more_files, more_links = _walk(link, seen)
            files += more_files
            pending += more_links
    return files


def scan_folder(root: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """``([(path, label), ...], class_names)`` of an image folder; ``class_names == []`` when flat."""
    root = check_folder(root)
    files = {path.relative_to(root): path for path in _images_under(root)}
    if any(len(rel.parts) == 1 for rel in files):  # an image in the root itself: flat
        return [(files[rel], 0) for rel in sorted(files, key=lambda r: r.as_posix())], []
    classes = sorted({rel.parts[0] for rel in files})
    label = {name: k for k, name in enumerate(classes)}
    order = sorted(files, key=lambda r: (label[r.parts[0]], Path(*r.parts[1:]).as_posix()))
    return [(files[rel], label[rel.parts[0]]) for rel in order], classes


def _pil_image():
    """PIL's Image module, its decompression-bomb warning silenced (every call: a ``catch_warnings``
    block may have reset the filters since): this module checks :data:`MAX_PIXELS` itself."""
    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    return Image


def _rgb(img):
    """``img`` as an 8-bit RGB image: 16-bit pixels scaled from 0..65535, float pixels from [0, 1].

    Raises :class:`_Refused` for pixel values outside those ranges.
    """
    Image = _pil_image()
    if img.mode not in (*_SIXTEEN_BIT, "I", "F"):
        return img.convert("RGB")  # 8-bit modes; PIL reduces 16-bit RGB(A) to 8 bits by itself
    values = np.asarray(img)
    if img.mode == "F":
        low, high, top, what = 0.0, 1.0, 1.0, "floating-point pixels"
    else:
        low, high, top, what = 0, 65535, 65535.0, "integer pixels"
    lo, hi = values.min(), values.max()
    if not (np.isfinite(lo) and np.isfinite(hi) and lo >= low and hi <= high):
        raise _Refused(f"{what} outside {low}..{high} (min {lo:g}, max {hi:g})")
    gray = np.floor(values.astype(np.float64) * (255.0 / top) + 0.5).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def load_image_uint8(path: str | Path, resolution: int) -> np.ndarray:
    """uint8 ``[R, R, 3]`` pixels by the ADM recipe; raises :class:`UnreadableImage`.

    RGB; while the short side is at least 2R, halve the image with a box filter; resize so that
    the short side is R (bicubic); crop the central R x R square.
    """
    Image = _pil_image()
    try:
        with Image.open(path) as img:  # reads the header only
            if img.width * img.height > MAX_PIXELS:
                raise _Refused(f"{img.width} x {img.height} pixels, more than the limit of {MAX_PIXELS:,}")
            img = _rgb(img)  # forces the full decode: truncated files fail here
        while min(img.size) >= 2 * resolution:
            img = img.resize((img.width // 2, img.height // 2), resample=Image.Resampling.BOX)
        scale = resolution / min(img.size)
        size = (max(resolution, round(img.width * scale)), max(resolution, round(img.height * scale)))
        img = img.resize(size, resample=Image.Resampling.BICUBIC)
    except _Refused as exc:
        raise UnreadableImage(path, str(exc)) from None
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
