"""Image conversions and grids. Images are float ``[N, C, H, W]`` in [-1, 1] inside the package.

uint8 mapping (the layout common FID tools read, NHWC):
``u = clamp(floor((x + 1) * 127.5 + 0.5), 0, 255)`` and back ``x = u / 127.5 - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .outputs import save_figure, write_with


def to_uint8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Images in [-1, 1], ``[N, C, H, W]`` -> uint8 ``[N, H, W, C]`` (values outside are clipped)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"to_uint8 expects [N, C, H, W] images, got shape {x.shape}")
    u = np.clip(np.floor((x + 1.0) * 127.5 + 0.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(u.transpose(0, 2, 3, 1))


def to_uint8_rgb(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1], ``[N, 1 or 3, H, W]`` -> uint8 ``[N, 3, H, W]`` on the same device (grey repeated),
    the pixels a PNG would hold: what the pretrained feature networks (Inception, DINOv2) take."""
    pixels = torch.floor((x.to(torch.float32) + 1.0) * 127.5 + 0.5).clamp_(0, 255).to(torch.uint8)
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1).contiguous()
    return pixels


def from_uint8(u: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images ``[N, H, W, C]`` -> float32 ``[N, C, H, W]`` in [-1, 1] (``u / 127.5 - 1``)."""
    if isinstance(u, torch.Tensor):
        u = u.detach().cpu().numpy()
    u = np.asarray(u)
    if u.ndim != 4:
        raise ValueError(f"from_uint8 expects [N, H, W, C] images, got shape {u.shape}")
    if u.dtype != np.uint8:
        raise ValueError(f"from_uint8 expects uint8 pixels, got dtype {u.dtype}")
    x = u.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def tile(images_u8: np.ndarray, rows: int, pad: int = 1) -> np.ndarray:
    """uint8 NHWC images -> one uint8 HWC image of ``rows`` rows (row-major), ``pad`` pixels apart."""
    n, h, w, c = images_u8.shape
    cols = -(-n // rows)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = (
            images_u8[i]
        )
    return canvas


def save_grid(images: torch.Tensor, out: Path, rows: int, scale: int = 4) -> None:
    """Save float [-1, 1] NCHW images as one PNG grid (nearest-neighbour upscaled by ``scale``)."""
    from PIL import Image

    grid = tile(to_uint8(images), rows)
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    write_with(out, lambda fh: image.save(fh, format="PNG"))


def save_sheet(
    grids: Sequence[tuple[str, torch.Tensor]] | Sequence[Sequence[tuple[str, torch.Tensor]]],
    out: Path,
    rows: int,
    row_labels: Sequence[str] | None = None,
    title: str = "",
) -> None:
    """Grids side by side (e.g. one per step count) with titles and row labels, as one PNG.

    ``grids`` is one row of (title, images) panels, or a list of such rows (a panel matrix).
    """
    from matplotlib.figure import Figure

    matrix = [list(grids)] if isinstance(grids[0][0], str) else [list(r) for r in grids]
    tiles = [[tile(to_uint8(x), rows) for _, x in panel_row] for panel_row in matrix]
    h, w = tiles[0][0].shape[:2]
    n_rows, n_cols = len(matrix), max(len(r) for r in matrix)
    fig = Figure(figsize=(1.6 * n_cols * w / h + 0.6, 1.8 * n_rows + 0.4), dpi=150)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, panel_row in enumerate(matrix):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(panel_row):
                ax.axis("off")
                continue
            img = tiles[r][c]
            ax.imshow(
                img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", interpolation="nearest", vmin=0, vmax=255
            )
            ax.set_title(panel_row[c][0], fontsize=7)
        if row_labels is not None:
            step = h / rows
            axes[r][0].set_yticks([step * (k + 0.5) for k in range(rows)], list(row_labels), fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, out)
