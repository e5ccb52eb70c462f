"""What a data source holds, known without loading its data (see ``registry.describe_source``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceInfo:
    """The shapes and classes of a data source.

    ``shape`` is the sample shape the model trains on (the latent shape for a latent cache);
    ``data_shape`` the shape of a decoded sample (the image ``(3, R, R)`` of a latent cache, else
    ``shape``). ``num_classes`` is 0 for unlabelled data. ``autoencoder`` is the VAE spec of a latent
    cache (its manifest's "vae") and ``scaling_factor`` its scaling factor; both None otherwise.
    """

    name: str
    shape: tuple[int, ...]
    num_classes: int
    data_shape: tuple[int, ...]
    autoencoder: str | None = None
    scaling_factor: float | None = None

    @classmethod
    def plain(cls, name: str, shape: tuple[int, ...], num_classes: int) -> SourceInfo:
        """Data the model trains on directly (toys, digits, synthetic): no autoencoder."""
        shape = tuple(int(s) for s in shape)
        return cls(name, shape, int(num_classes), shape)
