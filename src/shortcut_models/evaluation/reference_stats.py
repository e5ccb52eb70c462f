"""FID reference statistics made by other tools, as this package's statistics files.

Two kinds of .npz are read (with ``allow_pickle=False``: arrays only, no code):

- the authors' statistics (``celeba256_fidstats_ours.npz``, ``imagenet256_fidstats_ours.npz``):
  ``mu`` [2048] and ``sigma`` [2048, 2048];
- ADM's reference batches (``VIRTUAL_imagenet256_labeled.npz``, Dhariwal & Nichol 2021): images
  ``arr_0`` [N, H, W, 3] uint8, with ``mu``/``sigma`` (and spatial ``mu_s``/``sigma_s``, unused)
  computed by their TensorFlow evaluator.

By default the stored ``mu``/``sigma`` are taken as they are, which reproduces the numbers papers
publish against those files. ``recompute=True`` computes the statistics of ``arr_0`` with this
package's Inception pipeline instead; when the file also stores ``mu``/``sigma``, the Fréchet
distance between the two is reported: the size of the difference between the two pipelines on the
same images (docs/pretrained.md).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import UserError
from ..metrics.frechet import FeatureStats, ReferenceStats, frechet_distance_from_stats
from .image_metrics import fid_extractor

__all__ = ["ConvertedStats", "convert_reference_stats"]


@dataclass(frozen=True)
class ConvertedStats:
    """What :func:`convert_reference_stats` wrote: where from, how, and the result."""

    source: Path
    out: Path
    method: str  # "stored" (mu/sigma copied) or "recomputed" (arr_0 through this package's Inception)
    stats: ReferenceStats
    fd_to_stored: float | None = None  # FD(recomputed, stored) when both exist

    def describe(self) -> str:
        count = f"{self.stats.count} images, " if self.stats.count else ""
        line = f"wrote {self.out} ({count}{self.stats.mu.shape[0]}-d features, {self.method} statistics)"
        if self.fd_to_stored is not None:
            line += f"; FD between these and the file's own mu/sigma: {self.fd_to_stored:.4f}"
        return line


def _stored(arrays, where: Path, count: int | None) -> ReferenceStats:
    mu, sigma = np.asarray(arrays["mu"], np.float64), np.asarray(arrays["sigma"], np.float64)
    d = mu.shape[0] if mu.ndim == 1 else -1
    if d < 1 or sigma.shape != (d, d):
        raise UserError(f"{where}: mu {mu.shape} and sigma {sigma.shape} must be [D] and [D, D]")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise UserError(f"{where}: mu or sigma holds NaN or infinite values")
    if not np.allclose(sigma, sigma.T, rtol=1e-5, atol=1e-8 * float(np.abs(sigma).max() or 1.0)):
        raise UserError(f"{where}: sigma is not symmetric (not a covariance matrix)")
    return ReferenceStats(mu, sigma, count, extractor="fid")  # these tools' statistics are Inception's


def _recomputed(
    images: np.ndarray, where: Path, weights: str | None, device: str, batch_size: int, progress: bool, keep: int
) -> ReferenceStats:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise UserError(f"{where}: arr_0 must hold uint8 images [N, H, W, 3], got {images.dtype} {images.shape}")
    if images.shape[0] < 2:
        raise UserError(f"{where}: arr_0 holds {images.shape[0]} image(s); statistics need at least 2")
    extractor = fid_extractor(weights, device)
    stats = FeatureStats(keep=keep)
    for start in tqdm(range(0, images.shape[0], batch_size), desc="ref-stats", unit="batch", disable=not progress):
        pixels = torch.from_numpy(images[start : start + batch_size]).permute(0, 3, 1, 2).float()
        stats.update(extractor(pixels / 127.5 - 1.0))
    return dataclasses.replace(stats.reference(), extractor="fid")


def convert_reference_stats(
    source: str | os.PathLike,
    out: str | os.PathLike,
    recompute: bool = False,
    inception_weights: str | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    keep: int = 10_000,
) -> ConvertedStats:
    """Write ``out`` (mu, sigma, count) from the statistics file or reference batch ``source``.

    Recomputed statistics also keep the first ``keep`` feature vectors (for KID, precision/recall)."""
    source, out = Path(source), Path(out)
    if not source.is_file():
        raise UserError(f"no statistics file at {source}")
    try:
        with np.load(source, allow_pickle=False) as arrays:
            keys = set(arrays.files)
            images = arrays["arr_0"] if "arr_0" in keys and (recompute or "mu" not in keys) else None
            count = int(arrays["arr_0"].shape[0]) if "arr_0" in keys and images is None else None
            stored = _stored(arrays, source, count) if {"mu", "sigma"} <= keys else None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {source} as an .npz of arrays: {str(exc).splitlines()[0]}") from None
    if images is None and stored is None:
        raise UserError(
            f"{source} holds neither mu/sigma nor images arr_0 (it has: {', '.join(sorted(keys)) or 'nothing'})"
        )
    if recompute and images is None:
        raise UserError(f"--recompute needs the images arr_0, which {source} does not hold")
    if images is not None:
        stats = _recomputed(images, source, inception_weights, device, batch_size, progress, keep)
        fd = frechet_distance_from_stats(stats, stored) if stored is not None else None
        result = ConvertedStats(source, out, "recomputed", stats, fd)
    else:
        result = ConvertedStats(source, out, "stored", stored)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.stats.to_npz(out)
    return result
