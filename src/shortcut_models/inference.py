"""Load a trained checkpoint for sampling: the EMA network, its objective and its data source.

Sample i always starts from the noise of index i (per-sample seeds), so the samples do not depend
on the batch size or on how many processes share the work (:func:`sample_blocks`,
:func:`generate_shared`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from . import seeding
from .config import TrainConfig
from .data import DataSource, build_source
from .models import build_model
from .sampling import sample
from .training import checkpoint as ckpt
from .training import distributed
from .training.trainer import build_objective, model_num_classes, resolve_device


@dataclass
class LoadedModel:
    """A checkpoint ready to sample: ``model`` holds the EMA weights in eval mode."""

    path: Path
    config: TrainConfig
    model: nn.Module
    objective: object
    source: DataSource
    step: int
    device: torch.device
    autoencoder: object | None = None  # decodes latents to images; None for pixel/vector data

    @property
    def label(self) -> str:
        """Short name for tables and plots, e.g. 'shortcut@3000'."""
        return f"{self.config.objective}@{self.step}"

    def generate_batches(
        self, num: int, steps: int, seed: int = 0, labels: torch.Tensor | None = None, cfg_scale: float = 1.0,
        batch_size: int = 1024,
    ) -> Iterator[torch.Tensor]:
        """Yield ``num`` samples batch by batch (float32, on ``device``, in the model's data space).

        Sample i starts from the noise of index i under ``seed``, so results do not depend on
        ``batch_size``. On CUDA the network runs under bf16 autocast (precision "auto"/"bf16").
        """
        for indices, _ in sample_blocks(num, batch_size):
            yield self.generate_indices(indices, steps, seed, labels, cfg_scale)

    def generate_indices(
        self, indices: torch.Tensor, steps: int, seed: int = 0, labels: torch.Tensor | None = None, cfg_scale: float = 1.0,
    ) -> torch.Tensor:
        """Samples number ``indices`` (float32, on ``device``); ``labels`` is indexed by sample number
        (numbers past its end, padding rows of :func:`sample_blocks`, take its last label)."""
        amp = self.device.type == "cuda" and self.config.precision in ("auto", "bf16")
        noise = torch.cat([self.noise(seed, i) for i in indices.tolist()])
        y = None if labels is None else labels[indices.clamp(max=len(labels) - 1)].to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            x = sample(self.model, noise, steps, y=y, cfg_scale=cfg_scale, fixed_d=self.objective.sampling_d,
                       max_steps=self.config.max_steps)
        return x.float()

    def generate(
        self, num: int, steps: int, seed: int = 0, labels: torch.Tensor | None = None, cfg_scale: float = 1.0,
        batch_size: int = 1024,
    ) -> torch.Tensor:
        """All ``num`` samples of :meth:`generate_batches`, decoded to data space (images for latents), on the CPU."""
        out = [self.decode(x).cpu() for x in self.generate_batches(num, steps, seed, labels, cfg_scale, batch_size)]
        return torch.cat(out) if out else torch.empty(0, *self.data_shape)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one decoded sample: the image for latent sources, else the model's sample shape."""
        return tuple(getattr(self.source, "image_shape", self.source.shape))

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> data space: the autoencoder's decoder for latents, else the identity."""
        return x if self.autoencoder is None else self.autoencoder.decode(x)

    @property
    def is_image(self) -> bool:
        return len(self.source.shape) == 3

    def balanced_labels(self, num: int) -> torch.Tensor | None:
        """Labels 0, 1, ..., C-1, 0, 1, ... for class-conditional models; None when unconditional."""
        nc = getattr(self.model, "num_classes", 0)
        return torch.arange(num) % nc if nc > 0 else None

    def noise(self, seed: int, index: int) -> torch.Tensor:
        """The noise of sample ``index`` under ``seed`` (per-sample seeds: independent of batching)."""
        g = seeding.generator(seed, seeding.STREAMS["sample"], index)
        return torch.randn(1, *self.source.shape, generator=g).to(self.device)


def sample_blocks(num: int, batch_size: int, rank: int = 0, world: int = 1) -> Iterator[tuple[torch.Tensor, int]]:
    """The sample numbers one process generates, block by block: ``(indices, size)`` pairs.

    Block j covers samples ``start = j * world * batch_size`` to ``start + size``; process k takes
    numbers start + k, start + k + world, ... Every process gets the same count per block (the last
    block is padded with numbers >= ``num``, which callers drop), so gathers stay in step and
    :func:`~shortcut_models.training.distributed.gather_interleaved` restores the index order. One
    process gets the contiguous batches ``[start, start + batch_size)``.
    """
    for start in range(0, num, world * batch_size):
        size = min(world * batch_size, num - start)
        yield start + rank + world * torch.arange(-(-size // world)), size


def generate_shared(
    loaded: LoadedModel, num: int, steps: int, seed: int = 0, labels: torch.Tensor | None = None, cfg_scale: float = 1.0,
    batch_size: int = 1024, everyone: bool = False,
) -> torch.Tensor | None:
    """:meth:`LoadedModel.generate` with the work split over the processes of a torchrun launch.

    Every process generates its share; the samples are merged in index order on rank 0 (on every
    process with ``everyone``) as one CPU tensor; the other processes get None. In one process this
    is exactly ``loaded.generate``.
    """
    rank, world = distributed.rank(), distributed.world_size()
    out = []
    for indices, size in sample_blocks(num, batch_size, rank, world):
        images = loaded.decode(loaded.generate_indices(indices, steps, seed, labels, cfg_scale))  # each rank decodes its share
        merged = distributed.gather_interleaved(images, everyone)
        if merged is not None:
            out.append(merged[:size].cpu())
    if not (everyone or distributed.is_main()):
        return None
    return torch.cat(out) if out else torch.empty(0, *loaded.data_shape)


def load_model(path: str | Path, device: str = "auto") -> LoadedModel:
    """Load the EMA network of a checkpoint (or of a run directory's latest checkpoint)."""
    ckpt_dir = ckpt.resolve_checkpoint(path)
    cfg = TrainConfig.from_dict(ckpt.read_config(ckpt_dir))
    dev = resolve_device(device)
    source = build_source(cfg.data)
    num_classes = model_num_classes(cfg, source.num_classes)
    model = build_model(cfg.model, source.shape, num_classes, cfg.model_args)
    ckpt.load_weights(model, ckpt_dir / "ema.safetensors")
    step = int(ckpt_dir.name.split("_")[-1])
    return LoadedModel(ckpt_dir, cfg, model.to(dev).eval(), build_objective(cfg, num_classes), source, step, dev,
                       source_autoencoder(source, dev))


def source_autoencoder(source: DataSource, device: torch.device):
    """The VAE that decodes a latent source's samples (None for pixel and vector data)."""
    return source.autoencoder(device) if hasattr(source, "autoencoder_spec") else None
