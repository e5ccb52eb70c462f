"""Seeded 2-D toy distributions: checkerboard, eight Gaussians, two moons and spirals.

Each toy returns points as float32 [N, 2] (roughly within [-2.5, 2.5], unit-ish scale) and int64
labels [N] naming a mode where the toy has several (eight Gaussians: 8, moons: 2, spirals: 2,
checkerboard: 0 = unlabelled). The same ``seed`` always gives the same points.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Generator = torch.Generator


def checkerboard(n: int, g: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform on the filled squares of a 4x4 board over [-2, 2]^2 (squares where floor x + floor y is even)."""
    col = torch.randint(0, 4, (n,), generator=g)
    row = torch.randint(0, 2, (n,), generator=g) * 2 + (col % 2)
    x = torch.stack([col, row], dim=1).float() + torch.rand(n, 2, generator=g) - 2.0
    return x, torch.zeros(n, dtype=torch.long)


def on_checkerboard(x: torch.Tensor) -> torch.Tensor:
    """True where a point lies on a filled square of :func:`checkerboard`'s board."""
    inside = (x.abs() <= 2.0).all(dim=1)
    cells = torch.floor(x).long()
    return inside & ((cells[:, 0] + cells[:, 1]) % 2 == 0)


def eight_gaussians(n: int, g: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Eight Gaussians (std 0.1) evenly spaced on a circle of radius 2; label = mode index."""
    label = torch.randint(0, 8, (n,), generator=g)
    angle = label.float() * (2 * math.pi / 8)
    centre = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centre + 0.1 * torch.randn(n, 2, generator=g), label


def two_moons(n: int, g: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved half circles with Gaussian jitter (std 0.05), centred and scaled; label = moon."""
    label = torch.randint(0, 2, (n,), generator=g)
    angle = torch.rand(n, generator=g) * math.pi
    upper = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    lower = torch.stack([1.0 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)
    x = torch.where(label[:, None] == 0, upper, lower)
    x = (x - torch.tensor([0.5, 0.25])) * 1.5 + 0.05 * torch.randn(n, 2, generator=g)
    return x, label


def spirals(n: int, g: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved Archimedean spiral arms with jitter (std 0.05); label = arm."""
    label = torch.randint(0, 2, (n,), generator=g)
    r = torch.sqrt(torch.rand(n, generator=g)) * 2.2
    angle = r * 2.5 + label.float() * math.pi
    x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1)
    return x + 0.05 * torch.randn(n, 2, generator=g), label


@dataclass(frozen=True)
class Toy:
    name: str
    make: Callable[[int, Generator], tuple[torch.Tensor, torch.Tensor]]
    num_classes: int


TOYS: dict[str, Toy] = {
    "checkerboard": Toy("checkerboard", checkerboard, 0),
    "eight_gaussians": Toy("eight_gaussians", eight_gaussians, 8),
    "moons": Toy("moons", two_moons, 2),
    "spirals": Toy("spirals", spirals, 2),
}


def toy_samples(name: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points and labels of toy ``name``, reproducible from ``seed``."""
    if name not in TOYS:
        raise ValueError(f"unknown 2-D toy {name!r}; choose from {', '.join(TOYS)}")
    return TOYS[name].make(n, torch.Generator().manual_seed(seed))
