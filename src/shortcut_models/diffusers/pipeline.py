"""Class-conditional and unconditional generation with a trained network, as a diffusers pipeline.

``ShortcutPipeline.from_pretrained(DIR)`` loads a folder written by ``shortcut export --format diffusers``:
``model_index.json`` names the components by (module, class) of this package and diffusers, so nothing
in the folder runs; the weights are safetensors (a folder without them is refused, never unpickled).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL
from diffusers.pipelines.pipeline_utils import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils import is_accelerate_available
from diffusers.utils.torch_utils import randn_tensor

from .. import seeding
from ..autoencoders import decode_with_vae, vae_factors
from ..guidance import EVERYWHERE
from ..images import to_uint8
from ..sampling import GuidedVelocity
from ..validation import check_int
from .network import ShortcutNetwork
from .scheduler import ShortcutScheduler

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class ShortcutPipeline(DiffusionPipeline):
    """Generate with a network conditioned on the step size (shortcut models, MeanFlow, flow matching...).

    Components: ``network`` (:class:`ShortcutNetwork`), ``scheduler`` (:class:`ShortcutScheduler`) and, for
    latent models, ``vae`` (a diffusers ``AutoencoderKL`` that decodes the latents; None for pixel models).

    Noise: ``seed=S`` starts sample i from the noise ``shortcut sample --seed S`` gives sample i (one generator
    per sample), so ``pipe(class_labels=labels, seed=S)`` returns the images of ``shortcut sample --seed S``
    with those labels (for a class-conditional model, its default labels are ``i % num_classes``, as
    ``pipe(batch_size=N, seed=S)`` uses); ``generator=`` draws the batch's noise in one call, diffusers'
    way (other noise, as valid); ``latents=`` gives the noise itself.
    """

    model_cpu_offload_seq = "network->vae"
    _optional_components = ["vae"]

    def __init__(
        self, network: ShortcutNetwork, scheduler: ShortcutScheduler, vae: AutoencoderKL | None = None
    ) -> None:
        super().__init__()
        self.register_modules(network=network, scheduler=scheduler, vae=vae)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> ShortcutPipeline:
        """diffusers' ``from_pretrained``, reading safetensors weights only (``use_safetensors=True`` unless
        given): a folder that holds only pickled weights is refused rather than unpickled."""
        kwargs.setdefault("use_safetensors", True)
        kwargs.setdefault("low_cpu_mem_usage", is_accelerate_available())  # no warning where accelerate is absent
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | Sequence[int] | torch.Tensor | None = None,
        batch_size: int | None = None,
        num_inference_steps: int = 1,
        guidance_scale: float = 1.0,
        guidance_interval: tuple[float, float] = EVERYWHERE,
        seed: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Generate images.

        Args:
            class_labels: one label per image (class-conditional models), each in 0..num_classes - 1.
            batch_size: how many images when ``class_labels`` is not given (default 1); a class-conditional
                model then takes the labels 0, 1, ..., num_classes - 1, 0, ... as ``shortcut sample`` does.
            num_inference_steps: any integer from 1 to the scheduler's ``max_steps`` (128).
            guidance_scale: classifier-free guidance weight w (1: none), as the model was trained for it:
                two network passes per step, or one for a network with the guidance input (iMF).
            guidance_interval: the times (t = 0 noise, t = 1 data) where guidance applies, for networks with
                the guidance input.
            seed: the noise of ``shortcut sample --seed``: sample i from its own generator.
            generator: a torch generator for diffusers-style noise (not ``shortcut sample``'s).
            latents: the starting noise itself, [B, *sample_shape].
            output_type: "pil" (the pixels ``shortcut sample`` writes), "np" (float [B, H, W, C] in [0, 1]),
                "pt" (float [B, C, H, W] in [0, 1]) or "latent" (the network's samples before decoding).

        ValueError names a bad input: a label outside the model's classes, steps outside 1..128, a seed
        together with a generator or latents, latents of the wrong shape, an unknown output type.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        device = self._execution_device
        shape = self.network.sample_shape
        labels = check_labels(class_labels, self.network.num_classes)
        count = batch_count(labels, batch_size, latents, shape)
        if labels is None and self.network.num_classes > 0:
            labels = torch.arange(count) % self.network.num_classes
        noise = starting_noise(count, shape, device, seed, generator, latents)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        velocity = GuidedVelocity.build(self.network, count, device, labels, guidance_scale, guidance_interval)
        dtype = self.network.dtype
        x = noise
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
                v = velocity(self.scheduler.scale_model_input(x, t), t, self.scheduler.step_size_inputs[i])
                x = self.scheduler.step(v, t, x).prev_sample
        if output_type == "latent":
            images: Any = x
        else:
            decoded = (
                x.float().clamp(-1.0, 1.0) if self.vae is None else decode_with_vae(self.vae, x, *vae_factors(self.vae))
            )
            images = postprocess(decoded, output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def check_labels(class_labels: int | Sequence[int] | torch.Tensor | None, num_classes: int) -> torch.Tensor | None:
    """``class_labels`` as int64 [B] (None stays None); ValueError for labels outside 0..num_classes - 1, or any
    label for an unconditional model."""
    if class_labels is None:
        return None
    if num_classes == 0:
        raise ValueError("this model is unconditional: leave class_labels out (batch_size= sets the count)")
    if isinstance(class_labels, (int, np.integer)) and not isinstance(class_labels, bool):
        class_labels = [int(class_labels)]
    labels = torch.as_tensor(class_labels)
    if labels.ndim != 1 or len(labels) == 0 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"class_labels must be one integer or a non-empty list of integers, got {class_labels!r}")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise ValueError(f"class label {int(bad[0])} is not one of this model's classes 0..{num_classes - 1}")
    return labels.long().cpu()


def batch_count(
    labels: torch.Tensor | None, batch_size: int | None, latents: torch.Tensor | None, shape: tuple[int, ...]
) -> int:
    """How many samples: one per label, else ``batch_size``, else the latents' count, else 1; ValueError when
    they disagree or ``latents`` do not have the shape [B, *shape]."""
    counts = {} if batch_size is None else {"batch_size": check_int("batch_size", batch_size, 1)}
    if labels is not None:
        counts["class_labels"] = len(labels)
    if latents is not None:
        if tuple(latents.shape[1:]) != tuple(shape) or latents.ndim != len(shape) + 1:
            raise ValueError(f"latents must have shape [B, {', '.join(map(str, shape))}], got {tuple(latents.shape)}")
        counts["latents"] = len(latents)
    if len(set(counts.values())) > 1:
        raise ValueError(f"the sample counts disagree: {', '.join(f'{k} gives {v}' for k, v in counts.items())}")
    return next(iter(counts.values()), 1)


def starting_noise(
    count: int,
    shape: tuple[int, ...],
    device: torch.device,
    seed: int | None,
    generator: torch.Generator | list[torch.Generator] | None,
    latents: torch.Tensor | None,
) -> torch.Tensor:
    """The noise [count, *shape] (float32, on ``device``) of ``latents``, ``seed`` or ``generator`` (one of them)."""
    given = [name for name, v in (("seed", seed), ("generator", generator), ("latents", latents)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"give one of seed, generator and latents, not {' and '.join(given)}")
    if latents is not None:
        return latents.to(device, torch.float32)
    if seed is not None:
        seed = check_int("seed", seed, 0, seeding.MAX_SEED)
        return torch.cat([seeding.sample_noise(seed, i, shape) for i in range(count)]).to(device)
    return randn_tensor((count, *shape), generator=generator, device=device, dtype=torch.float32)


def postprocess(images: torch.Tensor, output_type: str) -> Any:
    """Images in [-1, 1] [B, C, H, W] as PIL images (the pixels ``shortcut sample`` writes), float arrays
    [B, H, W, C] in [0, 1] ("np") or float tensors [B, C, H, W] in [0, 1] ("pt")."""
    if output_type == "pt":
        return (images + 1.0) / 2.0
    if output_type == "np":
        return ((images + 1.0) / 2.0).permute(0, 2, 3, 1).cpu().numpy()
    from PIL import Image

    pixels = to_uint8(images)
    return [Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p) for p in pixels]
