"""Autoencoders between images and the space the model trains in.

Conventions: images are float ``[N, C, H, W]`` in [-1, 1]. ``encode`` returns the posterior mean and
standard deviation *already multiplied by the scaling factor* (and shifted by the VAE's shift factor,
when its config has one), so a latent sample ``mean + std * eps`` is exactly the data point x1 the
model trains on (t = 1 end of the path). ``decode`` inverts that scaling and returns images clamped to
[-1, 1]. Pixel-space models use :class:`IdentityAutoencoder` (mean = x, std = 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from .errors import UserError

OFFLINE_HINT = "pass a local directory saved with AutoencoderKL.save_pretrained"


@runtime_checkable
class Autoencoder(Protocol):
    """What the latent cache, the trainer and the sampler need from an autoencoder."""

    name: str  # a spec that build_autoencoder turns back into the same autoencoder
    scaling_factor: float

    def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape ``(C, h, w)`` of the latent of one image of shape ``(3, H, W)``."""
        ...

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [-1, 1] -> (posterior mean, posterior std), both scaled, float32."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [-1, 1] (clamped), float32."""
        ...

    def to(self, device: torch.device | str) -> Autoencoder:
        """Move to ``device``; returns self."""
        ...


class IdentityAutoencoder:
    """Pixel space: the 'latent' is the image itself, with a zero posterior std."""

    name = "identity"
    scaling_factor = 1.0

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(int(s) for s in image_shape)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.to(self.device, torch.float32)
        return x, torch.zeros_like(x)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents.to(self.device, torch.float32).clamp(-1.0, 1.0)

    def to(self, device: torch.device | str) -> IdentityAutoencoder:
        self.device = torch.device(device)
        return self


def _looks_like_path(spec: str) -> bool:
    """True for specs that can only mean a local directory (hub names are 'owner/name')."""
    return spec.startswith((".", "/", "~")) or "\\" in spec or spec.count("/") > 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300].rstrip(".")


class StableDiffusionVAE:
    """A ``diffusers.AutoencoderKL`` (e.g. ``stabilityai/sd-vae-ft-mse``), frozen, in eval mode.

    ``name_or_path`` is a Hugging Face hub name (taken from the local hub cache when there, else
    downloaded by diffusers) or a local directory written by ``save_pretrained`` (loaded with
    ``local_files_only=True``; a directory whose ``vae/`` subfolder holds the VAE, as in a full
    Stable Diffusion checkout, also works). Latents are ``(z - shift_factor) * scaling_factor`` with
    both factors read from the VAE's config (0.18215 and no shift for Stable Diffusion 1.x/2.x).
    Encoding (the latent cache) runs in ``dtype``; decoding on CUDA runs under bf16 autocast
    (``decode_amp``), which benchmarks/RESULTS.md measures against fp32.
    """

    def __init__(
        self,
        name_or_path: str,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        decode_amp: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.decode_amp = decode_amp  # bf16 autocast for decoding on CUDA (samples, FID); encoding stays fp32
        self.vae = self._load(str(name_or_path))
        self.vae.requires_grad_(False).eval().to(self.device)
        config = self.vae.config
        self.scaling_factor, self.shift_factor = vae_factors(self.vae)
        self.latent_channels = int(config.latent_channels)
        self.downsample = 2 ** (len(config.block_out_channels) - 1)

    def _load(self, spec: str) -> torch.nn.Module:
        """Load the VAE and set ``self.name``; every failure becomes one UserError line."""
        try:
            from diffusers import AutoencoderKL
        except ImportError:
            raise UserError(
                f"cannot load VAE {spec!r}: the 'diffusers' package is not installed (pip install diffusers)"
            ) from None
        local = Path(spec).expanduser()
        kwargs: dict = {"low_cpu_mem_usage": False, "torch_dtype": self.dtype}
        if local.is_dir():
            self.name = str(local.resolve())
            if not (local / "config.json").is_file() and (local / "vae" / "config.json").is_file():
                kwargs["subfolder"] = "vae"
            try:
                return AutoencoderKL.from_pretrained(str(local), local_files_only=True, **kwargs)
            except Exception as exc:  # noqa: BLE001 - diffusers raises OSError, ValueError, JSON errors...
                raise UserError(f"cannot load VAE {spec!r}: {_first_line(exc)}; {OFFLINE_HINT}") from None
        if local.exists():
            raise UserError(f"cannot load VAE {spec!r}: it is a file, not a directory; {OFFLINE_HINT}")
        if _looks_like_path(spec):
            raise UserError(f"cannot load VAE {spec!r}: no such directory; {OFFLINE_HINT}")
        self.name = spec
        for local_only in (True, False):  # the local hub cache first (no network), then a download
            try:
                return AutoencoderKL.from_pretrained(spec, local_files_only=local_only, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any failure is reported as one line
                error = exc
        raise UserError(
            f"cannot load VAE {spec!r} from the Hugging Face hub (offline, or not a VAE repository: {_first_line(error)}); {OFFLINE_HINT}"
        )

    def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        _, h, w = image_shape
        if h % self.downsample or w % self.downsample:
            raise UserError(f"image size {h}x{w} is not divisible by the VAE's downsampling factor {self.downsample}")
        return (self.latent_channels, h // self.downsample, w // self.downsample)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(images.to(self.device, self.dtype)).latent_dist
        mean = (posterior.mean.float() - self.shift_factor) * self.scaling_factor
        return mean, posterior.std.float() * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images; on CUDA under bf16 autocast unless ``decode_amp`` is False."""
        amp = self.decode_amp and self.device.type == "cuda" and self.dtype == torch.float32
        return decode_with_vae(self.vae, latents, self.scaling_factor, self.shift_factor, amp)

    def to(self, device: torch.device | str) -> StableDiffusionVAE:
        self.device = torch.device(device)
        self.vae.to(self.device)
        return self


def vae_factors(vae: torch.nn.Module) -> tuple[float, float]:
    """(scaling factor, shift factor) of a diffusers AutoencoderKL, from its config (no shift: 0)."""
    config = vae.config
    return float(config.scaling_factor), float(getattr(config, "shift_factor", None) or 0.0)


def decode_with_vae(
    vae: torch.nn.Module, latents: torch.Tensor, scaling_factor: float, shift_factor: float, amp: bool = False
) -> torch.Tensor:
    """Scaled latents -> images in [-1, 1] (clamped, float32) through a diffusers AutoencoderKL ``vae`` on its
    own device and dtype: ``z = latents / scaling_factor + shift_factor``; ``amp``: under bf16 autocast (CUDA)."""
    z = latents.to(vae.device, torch.float32) / scaling_factor + shift_factor
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        return vae.decode(z.to(vae.dtype)).sample.float().clamp(-1.0, 1.0)


def build_autoencoder(
    spec: str | None, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Autoencoder:
    """None, '' or 'identity' -> pixel space; anything else -> a Stable Diffusion VAE name or path."""
    if spec is None or spec.strip() in ("", "identity"):
        return IdentityAutoencoder(device)
    return StableDiffusionVAE(spec.strip(), device=device, dtype=dtype)


def decode_in_batches(autoencoder: Autoencoder, latents: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Decode many latents a batch at a time; returns float32 images in [-1, 1] on the CPU."""
    out = [autoencoder.decode(latents[i : i + batch_size]).cpu() for i in range(0, latents.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0)
