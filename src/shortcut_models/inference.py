"""Load a trained checkpoint for sampling: the EMA network, its objective and its data source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

    @property
    def label(self) -> str:
        """Short name for tables and plots, e.g. 'shortcut@3000'."""
        return f"{self.config.objective}@{self.step}"

    def generate(
        self, num: int, steps: int, seed: int = 0, labels: torch.Tensor | None = None, cfg_scale: float = 1.0, batch_size: int = 1024
    ) -> torch.Tensor:
        """``num`` samples (float, data space) from noise seeded by ``seed``; batched, same result for any batch_size."""
        out = []
        for start in range(0, num, batch_size):
            n = min(batch_size, num - start)
            noise = torch.cat([self.noise(seed, i) for i in range(start, start + n)])
            y = None if labels is None else labels[start : start + n].to(self.device)
            x = sample(self.model, noise, steps, y=y, cfg_scale=cfg_scale, fixed_d=self.objective.sampling_d,
                       max_steps=self.config.max_steps)
            out.append(x.float().cpu())
        return torch.cat(out) if out else torch.empty(0, *self.source.shape)

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
