"""Load a trained checkpoint for sampling: the EMA network, its objective and its data source."""

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
        amp = self.device.type == "cuda" and self.config.precision in ("auto", "bf16")
        for start in range(0, num, batch_size):
            n = min(batch_size, num - start)
            noise = torch.cat([self.noise(seed, i) for i in range(start, start + n)])
            y = None if labels is None else labels[start : start + n].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                x = sample(self.model, noise, steps, y=y, cfg_scale=cfg_scale, fixed_d=self.objective.sampling_d,
                           max_steps=self.config.max_steps)
            yield x.float()

    def generate(
        self, num: int, steps: int, seed: int = 0, labels: torch.Tensor | None = None, cfg_scale: float = 1.0,
        batch_size: int = 1024,
    ) -> torch.Tensor:
        """All ``num`` samples of :meth:`generate_batches` on the CPU."""
        out = [x.cpu() for x in self.generate_batches(num, steps, seed, labels, cfg_scale, batch_size)]
        return torch.cat(out) if out else torch.empty(0, *self.source.shape)

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
    return LoadedModel(ckpt_dir, cfg, model.to(dev).eval(), build_objective(cfg, num_classes), source, step, dev)
