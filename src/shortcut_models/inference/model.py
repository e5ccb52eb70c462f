"""A trained network as a sampler: load a checkpoint (no data needed) and generate from it.

Sample i always starts from the noise of index i (per-sample seeds), so the samples do not depend
on the batch size or on how many processes share the work (:func:`sample_blocks`,
:func:`generate_shared`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import checkpoints as ckpt
from .. import distributed, seeding
from ..autoencoders import Autoencoder, build_autoencoder
from ..checkpoints import ModelSpec
from ..errors import RunError, UserError
from ..guidance import EVERYWHERE
from ..models import build_network
from ..objectives import Objective, build_objective
from ..runtime import autocast_dtype
from ..sampling import renoise_starts, renoising_sample, sample


@dataclass
class LoadedModel:
    """A network ready to sample: ``model`` holds the EMA weights in eval mode.

    ``spec`` describes the network, its sample shape, classes, objective and autoencoder;
    ``training`` is the training config of the run when the checkpoint holds one.
    """

    path: Path
    spec: ModelSpec
    model: nn.Module
    objective: Objective
    step: int
    device: torch.device
    autoencoder: Autoencoder | None = None  # decodes latents to images; None for pixel/vector data
    precision: str = "auto"  # "auto" = bf16 autocast on CUDA, "fp32", "bf16"
    training: dict[str, Any] | None = None
    cfg_interval: tuple[float, float] = EVERYWHERE  # where guidance applies (networks with the guidance input)
    sampler: str = "euler"  # "euler", or "renoise": the re-noising sampler (sampling.renoising_sample)
    renoise_at: tuple[float, ...] = ()  # the re-noising sampler's later start times; (): i/N

    @property
    def label(self) -> str:
        """Short name for tables and plots, e.g. 'shortcut@3000'."""
        return f"{self.spec.objective}@{self.step}"

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def max_steps(self) -> int:
        return self.spec.max_steps

    def generate_batches(
        self,
        num: int,
        steps: int,
        seed: int = 0,
        labels: torch.Tensor | None = None,
        cfg_scale: float = 1.0,
        batch_size: int = 1024,
    ) -> Iterator[torch.Tensor]:
        """Yield ``num`` samples batch by batch (float32, on ``device``, in the model's space).

        Sample i starts from the noise of index i under ``seed``, so results do not depend on
        ``batch_size``. On CUDA the network runs under bf16 autocast (precision "auto"/"bf16").
        """
        for indices, _ in sample_blocks(num, batch_size):
            yield self.generate_indices(indices, steps, seed, labels, cfg_scale)

    def generate_indices(
        self,
        indices: torch.Tensor,
        steps: int,
        seed: int = 0,
        labels: torch.Tensor | None = None,
        cfg_scale: float = 1.0,
    ) -> torch.Tensor:
        """Samples number ``indices`` (float32, on ``device``); ``labels`` is indexed by sample number
        (numbers past its end, padding rows of :func:`sample_blocks`, take its last label)."""
        amp = autocast_dtype(self.precision, self.device) if self.device.type == "cuda" else None
        noise = torch.cat([self.noise(seed, i) for i in indices.tolist()])
        y = None if labels is None else labels[indices.clamp(max=len(labels) - 1)].to(self.device)
        with torch.autocast(self.device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            if self.sampler == "renoise":
                starts = renoise_starts(steps, self.renoise_at)
                fresh = [self.fresh_noise(seed, indices, k) for k in range(1, len(starts))]
                x = renoising_sample(
                    self.model,
                    noise,
                    starts,
                    y,
                    fresh,
                    cfg_scale=cfg_scale,
                    fixed_d=self.objective.sampling_d_at(1),  # each step is a one-step jump
                    cfg_interval=self.cfg_interval,
                )
            else:
                x = sample(
                    self.model,
                    noise,
                    steps,
                    y=y,
                    cfg_scale=cfg_scale,
                    fixed_d=self.objective.sampling_d_at(steps),
                    max_steps=self.max_steps,
                    cfg_interval=self.cfg_interval,
                )
        return x.float()

    @property
    def guidance_input(self) -> bool:
        """Whether the network takes the guidance scale as an input (one network pass per step when guided)."""
        return bool(getattr(self.model, "guidance_input", False))

    def passes_per_step(self, cfg_scale: float) -> int:
        """Network passes per sampling step: 2 under classifier-free guidance, 1 unguided or with the guidance input."""
        return 2 if cfg_scale != 1.0 and not self.guidance_input else 1

    def generate(
        self,
        num: int,
        steps: int,
        seed: int = 0,
        labels: torch.Tensor | None = None,
        cfg_scale: float = 1.0,
        batch_size: int = 1024,
    ) -> torch.Tensor:
        """All ``num`` samples of :meth:`generate_batches`, decoded to data space (images for latents), on the CPU."""
        out = [self.decode(x).cpu() for x in self.generate_batches(num, steps, seed, labels, cfg_scale, batch_size)]
        return torch.cat(out) if out else torch.empty(0, *self.data_shape)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one decoded sample: the image for latent models, else the model's sample shape."""
        return self.spec.data_shape

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> data space: the autoencoder's decoder for latents, else the identity."""
        return x if self.autoencoder is None else self.autoencoder.decode(x)

    @property
    def is_image(self) -> bool:
        return len(self.spec.sample_shape) == 3

    def balanced_labels(self, num: int) -> torch.Tensor | None:
        """Labels 0, 1, ..., C-1, 0, 1, ... for class-conditional models; None when unconditional."""
        nc = self.num_classes
        return torch.arange(num) % nc if nc > 0 else None

    def noise(self, seed: int, index: int) -> torch.Tensor:
        """The noise of sample ``index`` under ``seed`` (per-sample seeds: independent of batching)."""
        return seeding.sample_noise(seed, index, self.spec.sample_shape).to(self.device)

    def fresh_noise(self, seed: int, indices: torch.Tensor, step: int) -> torch.Tensor:
        """The re-noising sampler's fresh noise before jump ``step`` of samples ``indices`` (per-sample seeds)."""
        shape = self.spec.sample_shape
        return torch.cat([seeding.renoise_noise(seed, i, step, shape) for i in indices.tolist()]).to(self.device)


def sample_blocks(num: int, batch_size: int, rank: int = 0, world: int = 1) -> Iterator[tuple[torch.Tensor, int]]:
    """The sample numbers one process generates, block by block: ``(indices, size)`` pairs.

    Block j covers samples ``start = j * world * batch_size`` to ``start + size``; process k takes
    numbers start + k, start + k + world, ... Every process gets the same count per block (the last
    block is padded with numbers >= ``num``, which callers drop), so gathers stay in step and
    :func:`~shortcut_models.distributed.gather_interleaved` restores the index order. One
    process gets the contiguous batches ``[start, start + batch_size)``.
    """
    for start in range(0, num, world * batch_size):
        size = min(world * batch_size, num - start)
        yield start + rank + world * torch.arange(-(-size // world)), size


def generate_shared(
    loaded: LoadedModel,
    num: int,
    steps: int,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    cfg_scale: float = 1.0,
    batch_size: int = 1024,
    everyone: bool = False,
) -> torch.Tensor | None:
    """:meth:`LoadedModel.generate` with the work split over the processes of a torchrun launch.

    Every process generates its share; the samples are merged in index order on rank 0 (on every
    process with ``everyone``) as one CPU tensor; the other processes get None. In one process this
    is exactly ``loaded.generate``.
    """
    rank, world = distributed.rank(), distributed.world_size()
    out = []
    for indices, size in sample_blocks(num, batch_size, rank, world):
        images = loaded.decode(
            loaded.generate_indices(indices, steps, seed, labels, cfg_scale)
        )  # each rank decodes its share
        merged = distributed.gather_interleaved(images, everyone)
        if merged is not None:
            out.append(merged[:size].cpu())
    if not (everyone or distributed.is_main()):
        return None
    return torch.cat(out) if out else torch.empty(0, *loaded.data_shape)


def non_finite_rows(x: torch.Tensor) -> torch.Tensor:
    """[N] bool: which samples of ``x`` [N, ...] hold a NaN or infinite value."""
    return ~torch.isfinite(x.reshape(len(x), -1)).all(dim=1)


def check_finite(x: torch.Tensor, what: str, bad: int | None = None, total: int | None = None) -> None:
    """RunError (exit code 1) when a sample set holds NaN or infinite values (``bad`` of ``total``
    samples when given, else counted in ``x``): such samples are never written as images or arrays,
    where they would come out black or white, nor measured."""
    if bad is None:
        bad, total = int(non_finite_rows(x).sum()), len(x)
    if bad:
        raise RunError(
            f"{bad} of {total} {what} hold NaN or infinite values; nothing written "
            "(the weights or the guidance scale are out of range)"
        )


def read_spec(config: dict[str, Any], where: Path) -> ModelSpec:
    """The :class:`ModelSpec` of a checkpoint's config.json (read by ``checkpoints.read_config``, which
    checks its format); UserError if malformed."""
    try:
        return ModelSpec.from_json(config)
    except ValueError as exc:
        raise UserError(f"{where / ckpt.CONFIG} does not describe a network: {exc}") from None


def load_autoencoder(spec: ModelSpec, device: torch.device | str) -> Autoencoder | None:
    """The autoencoder that decodes the spec's samples (None for pixels and vectors)."""
    if spec.autoencoder is None:
        return None
    ae = build_autoencoder(spec.autoencoder, device=device)
    if spec.scaling_factor is not None and abs(float(ae.scaling_factor) - spec.scaling_factor) > 1e-9:
        raise UserError(
            f"VAE {spec.autoencoder!r} now has scaling factor {ae.scaling_factor}; the model was trained with "
            f"{spec.scaling_factor}"
        )
    return ae


def load_model(path: str | Path, device: str = "auto", precision: str = "auto") -> LoadedModel:
    """Load the EMA network of a checkpoint for sampling.

    ``path`` is a checkpoint directory (any name), a run directory or a Hugging Face hub repository id
    ``owner/name`` holding config.json and the weights. Only config.json and the weights are read: the
    training data (e.g. a latent cache) is never opened. In a run directory the newest checkpoint that
    loads is used; one warning names each newer checkpoint passed over and what is wrong with it (the
    files are left as they are). UserError when none loads, naming the newest one's problem.
    """
    candidates = ckpt.checkpoint_candidates(path)
    dev = distributed.resolve_device(device)
    problems: list[str] = []
    for ckpt_dir in candidates:
        try:
            loaded = _load_checkpoint(ckpt_dir, dev, precision)
        except (ckpt.UnsafeCheckpoint, ckpt.OtherFormat):  # never passed over for an older checkpoint
            raise
        except UserError as exc:
            if len(candidates) == 1:
                raise
            problems.append(str(exc))
            continue
        if problems and distributed.is_main():
            print(
                f"warning: using {ckpt_dir}: skipped {len(problems)} newer checkpoint(s): {'; '.join(problems)}",
                file=sys.stderr,
            )
        return loaded
    raise UserError(f"no checkpoint in {path} loads; the newest: {problems[0]}")


def _load_checkpoint(ckpt_dir: Path, dev: torch.device, precision: str) -> LoadedModel:
    config = ckpt.read_config(ckpt_dir)
    spec = read_spec(config, ckpt_dir)
    try:
        model = build_network(spec.network)
        objective = build_objective(spec.objective, spec.num_classes, spec.objective_args)
    except ValueError as exc:
        raise UserError(f"{ckpt_dir / ckpt.CONFIG}: {exc}") from None
    weights = ckpt.sampling_weights(ckpt_dir)
    ckpt.load_weights(model, weights)
    step = config.get("step", ckpt.step_of(ckpt_dir))
    return LoadedModel(
        ckpt_dir,
        spec,
        model.to(dev).eval(),
        objective,
        int(step or 0),
        dev,
        load_autoencoder(spec, dev),
        precision,
        ckpt.training_config(config),
    )
