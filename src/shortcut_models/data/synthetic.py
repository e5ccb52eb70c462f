"""Synthetic data of any shape: standard-normal samples drawn fresh every step.

``data=synthetic:4x32x32`` (unlabelled) or ``data=synthetic:4x32x32:1000`` (uniform labels over
1000 classes) gives batches shaped like Stable Diffusion latents of 256x256 images without a latent
cache. It exists for throughput benchmarks and smoke tests of large networks (see benchmarks/); a
model trained on it learns nothing worth sampling. Batches are pure functions of (seed, step).
"""

from __future__ import annotations

import torch

from .. import seeding
from ..errors import UserError
from .info import SourceInfo

PREFIX = "synthetic:"


def parse_synthetic(name: str) -> tuple[tuple[int, ...], int]:
    """``synthetic:CxHxW[:CLASSES]`` -> (shape, num_classes); a malformed name is a UserError."""
    parts = name[len(PREFIX) :].split(":")
    try:
        shape = tuple(int(v) for v in parts[0].lower().split("x"))
        classes = int(parts[1]) if len(parts) > 1 else 0
        if len(parts) > 2 or not shape or min(shape) < 1 or classes < 0:
            raise ValueError
    except ValueError:
        raise UserError(
            f"bad synthetic data {name!r}; use synthetic:CxHxW or synthetic:CxHxW:CLASSES, e.g. synthetic:4x32x32:1000"
        ) from None
    return shape, classes


class SyntheticSource:
    """Fresh N(0, I) samples of ``shape`` at every step, with uniform labels when ``num_classes`` > 0."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.shape, self.num_classes = parse_synthetic(name)

    @property
    def info(self) -> SourceInfo:
        return SourceInfo.plain(self.name, self.shape, self.num_classes)

    def _draw(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn((n, *self.shape), generator=gen)
        y = torch.randint(0, max(self.num_classes, 1), (n,), generator=gen)
        return x, y

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._draw(batch_size, seeding.generator(seed, seeding.STREAMS["data"], step))

    def reference(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._draw(n, seeding.generator(seed, seeding.STREAMS["reference"]))
