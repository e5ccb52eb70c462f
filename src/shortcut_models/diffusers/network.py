"""A velocity network of the package (DiT, MLP) as a diffusers model: saved and loaded by ``save_pretrained`` /
``from_pretrained`` as ``config.json`` + ``diffusion_pytorch_model.safetensors`` (no pickle)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ..models import build_network


class ShortcutNetwork(ModelMixin, ConfigMixin):
    """``network(x_t, t, d, y)``: the velocity at ``x_t`` [B, ...], time ``t`` [B] (0 noise, 1 data), step-size
    input ``d`` [B] and labels ``y`` [B] (``num_classes`` is the null label); networks trained by iMF also take
    ``guidance=`` (:mod:`shortcut_models.guidance`).

    Args:
        network: ``{"class": "DiT" | "MLP", "args": {...}}``, the description a checkpoint's config.json holds;
            the class comes from the package's fixed table (:data:`shortcut_models.models.NETWORKS`), never
            from a name looked up elsewhere. ValueError on a bad description.
        sample_shape: one sample in the space the network works in (latents for latent models).
    """

    # Loading copies the weights into the network built in the dtype asked for (``torch_dtype=``): assigning
    # them would keep the file's float32, since the DiT's first tensor (its fixed position table) is float32.
    _supports_param_buffer_assignment = False

    @register_to_config
    def __init__(self, network: dict[str, Any], sample_shape: list[int]) -> None:
        super().__init__()
        self.net = build_network(network)

    @property
    def num_classes(self) -> int:
        """Real classes (0: unconditional); ``num_classes`` itself is the null label."""
        return int(self.net.num_classes)

    @property
    def guidance_input(self) -> bool:
        """Whether the network takes the guidance scale as an input (trained by iMF)."""
        return bool(getattr(self.net, "guidance_input", False))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.config.sample_shape)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, d: torch.Tensor, y: torch.Tensor, **inputs: torch.Tensor
    ) -> torch.Tensor:
        return self.net(x, t, d, y, **inputs)
