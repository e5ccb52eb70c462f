"""Helpers shared by the benchmark scripts: device set-up, synchronised timing, a random SD VAE."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from shortcut_models.experiments.timing import interleaved_times, median_ratio  # noqa: F401 (re-exported)
from shortcut_models.runtime import tune_allocator

# Stable Diffusion's VAE (the config of stabilityai/sd-vae-ft-mse, 83.7M parameters). Benchmarks build it
# with random weights: encoding and decoding cost the same as with the real weights, and nothing is downloaded.
SD_VAE_ARCHITECTURE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "sample_size": 256,
    "scaling_factor": 0.18215,
}


def setup(threads: int = 0) -> torch.device:
    """Allocator and TF32 settings of the `shortcut` command; returns CUDA when present, else the CPU."""
    tune_allocator()
    if threads:
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda")
    return torch.device("cpu")


def describe(device: torch.device) -> str:
    """One line naming the machine: the GPU (or CPU threads) and the torch version."""
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    return f"device: {what}; torch {torch.__version__}; python {sys.version.split()[0]}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of ``fn()``, with the device idle before and finished after."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device, warmup: int = 1
) -> dict[str, list[float]]:
    """Times of each function, run alternately (order flipped every round); warm-up rounds dropped."""
    return interleaved_times({name: (lambda i, f=f: timed(f, device)) for name, f in fns.items()}, repeats, warmup)


def random_sd_vae(directory: Path, device: torch.device):
    """A :class:`~shortcut_models.autoencoders.StableDiffusionVAE` with SD's architecture and random weights,
    loaded through the library's own loading code from a ``save_pretrained`` directory."""
    from diffusers import AutoencoderKL

    from shortcut_models.autoencoders import StableDiffusionVAE

    if not (directory / "config.json").is_file():
        torch.manual_seed(0)
        AutoencoderKL(**SD_VAE_ARCHITECTURE).save_pretrained(str(directory))
    return StableDiffusionVAE(str(directory), device=device)
