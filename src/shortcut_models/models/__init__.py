"""Velocity networks ``model(x_t, t, d, y)``: an MLP for vectors and a DiT for images/latents."""

from __future__ import annotations

from typing import Any

from torch import nn

from .mlp import MLP


def build_model(name: str, shape: tuple[int, ...], num_classes: int, model_args: dict[str, Any]) -> nn.Module:
    """Build network ``name`` ('mlp' or a DiT preset such as 'DiT-B/2') for samples of ``shape``."""
    from ..errors import UserError

    try:
        if name == "mlp":
            if len(shape) != 1:
                raise UserError(f"model 'mlp' needs vector data, got samples of shape {shape}")
            return MLP(dim=shape[0], num_classes=num_classes, **model_args)
        from .dit import DIT_PRESETS, DiT

        if name in DIT_PRESETS:
            if len(shape) != 3 or shape[1] != shape[2]:
                raise UserError(f"model {name!r} needs square images [C, H, H], got samples of shape {shape}")
            return DiT.from_preset(name, input_size=shape[1], in_channels=shape[0], num_classes=num_classes, **model_args)
        raise UserError(f"unknown model {name!r}; choose 'mlp' or one of {', '.join(DIT_PRESETS)}")
    except TypeError as exc:
        raise UserError(f"bad model_args for {name!r}: {exc}") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None


__all__ = ["MLP", "build_model"]
