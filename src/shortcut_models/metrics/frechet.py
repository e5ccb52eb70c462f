"""Fréchet distance between two sets of feature vectors, from streaming float64 statistics.

The Fréchet distance (FD) between Gaussians N(mu1, S1) and N(mu2, S2) is

    FD = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)).

With Inception-v3 pool features it is FID; with other feature extractors it is "FD_<name>".

:class:`FeatureStats` accumulates, in float64, the count n, the sum of the vectors and the sum of
their outer products. These three are plain sums, so two accumulators (or the same accumulator on
several ranks, through an all-reduce of :meth:`FeatureStats.state_tensors`) merge exactly, and the
result does not depend on how the data were batched. The mean is sum / n and the covariance the
unbiased (sum_xx - n mu mu^T) / (n - 1). That difference cancels digits when the mean is much
larger than the spread; float64 leaves ample room for network features (means and spreads of the
same order).

Statistics files (:meth:`FeatureStats.to_npz`) hold ``mu`` [D] and ``sigma`` [D, D] in float64, the
keys the common FID tools read, plus ``count`` and ``extractor``, the name of the feature space ("fid",
"fd-dinov2", "fd-digits"; a file without it, as other tools write them, is taken as Inception's).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..outputs import save_npz

__all__ = ["FeatureStats", "ReferenceStats", "frechet_distance", "frechet_distance_from_stats"]


def _as_float64_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu", torch.float64).numpy()
    return np.asarray(a, dtype=np.float64)


@dataclass(frozen=True)
class ReferenceStats:
    """Mean ``mu`` [D] and covariance ``sigma`` [D, D] (float64) of a feature set, e.g. a reference split.

    ``features`` optionally keeps some of the feature vectors themselves ([K, D] float32): the
    metrics that compare sets of points (KID, precision/recall) need them, not just the moments.
    ``extractor`` names the feature space ("fid", "fd-dinov2", ...; None: not recorded, as in the files
    other FID tools write).
    """

    mu: np.ndarray
    sigma: np.ndarray
    count: int | None = None
    features: np.ndarray | None = None
    extractor: str | None = None

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> ReferenceStats:
        """Read ``mu`` and ``sigma`` (and ``count``, ``features``, ``extractor`` when present) from an .npz file."""
        with np.load(path) as f:
            if "mu" not in f or "sigma" not in f:
                raise ValueError(f"{os.fspath(path)}: a statistics file needs the arrays 'mu' and 'sigma'")
            count = int(f["count"]) if "count" in f else None
            features = np.asarray(f["features"], np.float32) if "features" in f else None
            extractor = str(f["extractor"]) if "extractor" in f else None
            mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
            return cls(mu, sigma, count, features, extractor)

    def to_npz(self, path: str | os.PathLike) -> None:
        """Write ``mu``, ``sigma`` (and ``count`` when known) to ``path`` (exactly that name)."""
        arrays = {"mu": np.asarray(self.mu, np.float64), "sigma": np.asarray(self.sigma, np.float64)}
        if self.count is not None:
            arrays["count"] = np.asarray(self.count, np.int64)
        if self.features is not None:
            arrays["features"] = np.asarray(self.features, np.float32)
        if self.extractor is not None:
            arrays["extractor"] = np.asarray(self.extractor)  # a unicode array: no pickle
        save_npz(path, **arrays)


class FeatureStats:
    """Streaming mean and covariance of feature vectors in float64.

    ``update`` takes [N, D] tensors or arrays (any float dtype, any device: they are copied to
    float64 on ``device``). The dimension D is fixed by the first update unless given. ``keep``: also
    keep the first ``keep`` feature vectors (float32, CPU) for :meth:`reference`; they are not merged
    across accumulators or processes.
    """

    def __init__(self, dim: int | None = None, device: torch.device | str = "cpu", keep: int = 0) -> None:
        self.device = torch.device(device)
        self.dim = dim
        self.keep = int(keep)
        self._kept: list[torch.Tensor] = []
        self._count = 0
        self._sum: torch.Tensor | None = None
        self._sum_outer: torch.Tensor | None = None
        if dim is not None:
            self._allocate(dim)

    def _allocate(self, dim: int) -> None:
        self.dim = int(dim)
        self._sum = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        self._sum_outer = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=self.device)

    @property
    def count(self) -> int:
        """Number of feature vectors seen."""
        return self._count

    def update(self, features: torch.Tensor | np.ndarray) -> FeatureStats:
        """Add the rows of ``features`` [N, D]; returns self."""
        if not isinstance(features, torch.Tensor):
            features = torch.from_numpy(np.asarray(features))
        if features.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {tuple(features.shape)}")
        if self._sum is None:
            self._allocate(features.shape[1])
        if features.shape[1] != self.dim:
            raise ValueError(f"features have dimension {features.shape[1]}, these statistics {self.dim}")
        x = features.detach().to(self.device, torch.float64)
        if not torch.isfinite(x).all():
            raise ValueError("features contain NaN or infinite values")
        room = self.keep - sum(len(k) for k in self._kept)
        if room > 0:
            self._kept.append(x[:room].to("cpu", torch.float32))
        self._count += x.shape[0]
        self._sum += x.sum(dim=0)
        self._sum_outer += x.T @ x
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """A new accumulator holding the data of both (exact: counts and sums add); inputs are unchanged."""
        parts = [s for s in (self, other) if s._sum is not None]
        if not parts:
            return FeatureStats(device=self.device)
        if len(parts) == 2 and other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {self.dim} and {other.dim}")
        n, total, outer = (t.to(self.device) for t in parts[0].state_tensors())
        for part in parts[1:]:
            n2, total2, outer2 = (t.to(self.device) for t in part.state_tensors())
            n, total, outer = n + n2, total + total2, outer + outer2
        return FeatureStats.from_state_tensors(n, total, outer, device=self.device)

    def state_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(count [], sum [D], sum of outer products [D, D]) as float64 tensors on ``device``.

        All three are sums over samples: an all-reduce (SUM) of each across ranks, then
        :meth:`from_state_tensors`, gives the statistics of the union.
        """
        if self._sum is None:
            raise ValueError("no features have been added yet")
        count = torch.tensor(float(self._count), dtype=torch.float64, device=self.device)
        return count, self._sum.clone(), self._sum_outer.clone()

    @classmethod
    def from_state_tensors(
        cls,
        count: torch.Tensor,
        total: torch.Tensor,
        total_outer: torch.Tensor,
        device: torch.device | str | None = None,
    ) -> FeatureStats:
        """Rebuild an accumulator from :meth:`state_tensors` (possibly summed across ranks)."""
        total = torch.as_tensor(total)
        device = total.device if device is None else torch.device(device)
        stats = cls(device=device)
        stats._allocate(total.shape[0])
        stats._count = int(round(float(count)))
        stats._sum.copy_(total.to(device, torch.float64))
        stats._sum_outer.copy_(torch.as_tensor(total_outer).to(device, torch.float64))
        return stats

    def mean(self) -> np.ndarray:
        """Mean vector [D], float64."""
        if self._count < 1:
            raise ValueError("the mean needs at least one feature vector")
        return (self._sum / self._count).cpu().numpy()

    def covariance(self) -> np.ndarray:
        """Unbiased covariance [D, D] (divided by n - 1), float64, exactly symmetric."""
        if self._count < 2:
            raise ValueError("the covariance needs at least two feature vectors")
        n = self._count
        mu = self._sum / n
        cov = (self._sum_outer - n * torch.outer(mu, mu)) / (n - 1)
        cov = 0.5 * (cov + cov.T)
        return cov.cpu().numpy()

    def reference(self) -> ReferenceStats:
        """The mean, covariance, count (and kept features) as a :class:`ReferenceStats`."""
        kept = torch.cat(self._kept).numpy() if self._kept else None
        return ReferenceStats(self.mean(), self.covariance(), self._count, kept)

    def to_npz(self, path: str | os.PathLike, extractor: str | None = None) -> None:
        """Write ``mu``, ``sigma`` and ``count`` to ``path`` (the layout of common FID tools), and the
        name of the feature ``extractor`` when given."""
        dataclasses.replace(self.reference(), extractor=extractor).to_npz(path)

    @staticmethod
    def load_npz(path: str | os.PathLike) -> ReferenceStats:
        """Read ``mu`` and ``sigma`` written by :meth:`to_npz` or by another FID tool."""
        return ReferenceStats.load_npz(path)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), in float64; arrays or tensors.

    The trace of the matrix square root is taken in a symmetric form. For PSD S1 and S2 the
    product S1 S2 is similar to A = S1^(1/2) S2 S1^(1/2) (both have the eigenvalues of
    S1^(1/2) (S1^(1/2) S2)), and A is symmetric positive semi-definite, so

        Tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(A)).

    Both steps use the symmetric eigensolver (eigh), which is backward stable and returns real
    eigenvalues even when the covariances are singular, as they are when there are fewer samples
    than dimensions or some features are constant. The usual route, a general matrix square root
    of the non-symmetric S1 S2 (scipy.linalg.sqrtm), can then fail or return complex values and
    needs an ad-hoc eps * I added to the diagonals. Round-off can make tiny eigenvalues slightly
    negative; they are set to 0 before the square root, and the result is clamped at 0 (a
    distance; identical statistics give 0 up to rounding).
    """
    mu1, mu2 = _as_float64_numpy(mu1), _as_float64_numpy(mu2)
    s1, s2 = _as_float64_numpy(sigma1), _as_float64_numpy(sigma2)
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"means must be two vectors of one length, got {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"covariances must be [{d}, {d}], got {s1.shape} and {s2.shape}")
    for name, a in (("mu1", mu1), ("mu2", mu2), ("sigma1", s1), ("sigma2", s2)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or infinite values")
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)

    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    a = root1 @ s2 @ root1
    a = 0.5 * (a + a.T)
    lam = np.linalg.eigvalsh(a)
    trace_sqrt = float(np.sqrt(np.clip(lam, 0.0, None)).sum())

    diff = mu1 - mu2
    fd = float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2)) - 2.0 * trace_sqrt
    return max(fd, 0.0)


def frechet_distance_from_stats(a: FeatureStats | ReferenceStats, b: FeatureStats | ReferenceStats) -> float:
    """:func:`frechet_distance` between two accumulators or stored statistics."""

    def unpack(s):
        if isinstance(s, FeatureStats):
            return s.mean(), s.covariance()
        return s.mu, s.sigma

    return frechet_distance(*unpack(a), *unpack(b))
