"""FID features: the Inception-v3 pool layer (2048-d) of the standard FID network, via torch-fidelity."""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import sys
import types
from functools import lru_cache
from pathlib import Path

import torch

from ..images import to_uint8_rgb

_INCEPTION_HINT = (
    "the 'fid' feature extractor needs the PyPI package torch-fidelity; install it with "
    "`pip install torch-fidelity` (or `pip install --no-deps torch-fidelity` where torchvision "
    "does not work with the installed torch: its Inception network needs only torch)"
)


def _import_module_alone(spec, name: str) -> types.ModuleType:
    """Import ``torch_fidelity.<name>`` without running the package's ``__init__``.

    The package's ``__init__`` imports every extractor it has, some of which import torchvision;
    the Inception module (and its TensorFlow-style resize) needs only torch. A bare stand-in parent
    module is put in ``sys.modules`` for the duration of the import and removed afterwards.
    """
    stand_in = types.ModuleType("torch_fidelity")
    stand_in.__path__ = list(spec.submodule_search_locations or [])
    stand_in.__package__ = "torch_fidelity"
    previous = sys.modules.get("torch_fidelity")
    sys.modules["torch_fidelity"] = stand_in
    try:
        return importlib.import_module(f"torch_fidelity.{name}")
    finally:
        if sys.modules.get("torch_fidelity") is stand_in:
            if previous is None:
                del sys.modules["torch_fidelity"]
            else:
                sys.modules["torch_fidelity"] = previous


def torch_fidelity_module(name: str) -> types.ModuleType:
    """The module ``torch_fidelity.<name>``, imported through the package or, where the package's
    ``__init__`` fails (torchvision missing or unusable with this torch), on its own. ImportError
    (saying what to install) without torch-fidelity."""
    if importlib.util.find_spec("torch_fidelity") is None:
        raise ImportError(_INCEPTION_HINT)
    try:
        return importlib.import_module(f"torch_fidelity.{name}")
    except Exception as package_error:
        try:
            return _import_module_alone(importlib.util.find_spec("torch_fidelity"), name)
        except Exception as module_error:
            raise ImportError(f"{_INCEPTION_HINT}; importing it failed: {package_error!r}") from module_error


@lru_cache(maxsize=1)
def _inception_network_class() -> type:
    """torch-fidelity's FeatureExtractorInceptionV3, subclassed so it can be built without weights."""
    FeatureExtractorInceptionV3 = torch_fidelity_module("feature_extractor_inceptionv3").FeatureExtractorInceptionV3

    class _InceptionNetwork(FeatureExtractorInceptionV3):
        # The package's constructor always loads a state dict; an empty one means "keep the
        # random initialisation" (weights="random", or weights that are loaded afterwards).
        def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
            if len(state_dict) == 0:
                return None
            return super().load_state_dict(state_dict, strict=strict, assign=assign)

    return _InceptionNetwork


class WeightsUnavailable(OSError):
    """The Inception weights were asked to be downloaded and could not be (no network, a proxy, a firewall)."""


def inception_weights_cache() -> Path:
    """Where torch-fidelity's Inception weights are kept once downloaded: ``$TORCH_HOME/hub/checkpoints``."""
    url = torch_fidelity_module("feature_extractor_inceptionv3").URL_INCEPTION_V3
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def download_weights(url: str, target: Path) -> None:
    """Fetch ``url`` into ``target`` (torch's downloader: a temporary file, renamed when complete)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(target), progress=False)


def downloaded_weights() -> Path:
    """torch-fidelity's Inception weights file: the cached copy, else downloaded once into the cache.
    :class:`WeightsUnavailable` (one line: the reason) when the download fails."""
    target = inception_weights_cache()
    if not target.is_file():
        url = torch_fidelity_module("feature_extractor_inceptionv3").URL_INCEPTION_V3
        try:
            download_weights(url, target)
        except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, timeouts, proxies: all one reason
            reason = getattr(exc, "reason", None) or exc
            raise WeightsUnavailable(
                f"the download of {url} failed: {str(reason).strip() or type(exc).__name__}"
            ) from None
    return target


def _empty_state_dict_file() -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save({}, buffer)
    buffer.seek(0)
    return buffer


class InceptionFeatures:
    """2048-d pool features of the FID Inception-v3 (``name = "fid"``), from ``torch-fidelity``.

    Why torch-fidelity: the usual PyTorch FID tool, ``pytorch-fid``, builds its network from
    torchvision, and PyPI's torchvision does not import beside the CPU build of torch this project
    installs. torch-fidelity's Inception module is written in plain torch, carries the same
    network (the TensorFlow FID graph "2015-12-05", converted) and reproduces the TensorFlow
    resize. When its package ``__init__`` cannot import (it also imports torchvision for other
    extractors), the Inception module is imported on its own. The package is imported only here,
    in the constructor; without it an ImportError says what to install.

    ``weights``:
      - a path to a state dict (``.pth``/``.pt`` read with ``torch.load(weights_only=True)``, or
        ``.safetensors``): torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``, or
        pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (same parameter names). A missing
        file raises FileNotFoundError.
      - ``"download"``: torch-fidelity's file in torch's cache (``$TORCH_HOME/hub/checkpoints``), downloaded
        there first when missing; :class:`WeightsUnavailable` when that fails (e.g. no network).
      - ``"random"``: the same architecture, initialised from seed 0 (tests; nothing is read).

    Pixel mapping: images in [-1, 1] become 8-bit pixels ``round((x + 1) * 127.5)`` (clipped to
    0..255; grey images are repeated to three channels), as if written to PNG; the network then
    resizes them to 299x299 with TensorFlow-1-style bilinear interpolation and maps pixels to
    ``(p - 128) / 128``, as the reference TensorFlow FID code does. Features are float32 on
    ``device``.
    """

    name = "fid"
    dim = 2048

    def __init__(
        self, weights: str | os.PathLike = "download", device: torch.device | str = "cpu", batch_size: int = 64
    ) -> None:
        if not isinstance(weights, (str, os.PathLike)):
            raise TypeError(f"weights must be a path, 'download' or 'random', got {type(weights).__name__}")
        weights_file: Path | None = None
        if weights == "download":
            weights_file = downloaded_weights()
        elif weights != "random":
            weights_file = Path(weights).expanduser()
            if not weights_file.is_file():
                raise FileNotFoundError(f"Inception weights file not found: {weights_file}")
        network_class = _inception_network_class()
        source = _empty_state_dict_file()
        with torch.random.fork_rng(devices=[]):  # "random" weights are the same every time
            torch.manual_seed(0)
            network = network_class(
                "shortcut-models-inception-v3", ["2048", "logits_unbiased"], feature_extractor_weights_path=source
            )
        if weights_file is not None:
            network.load_state_dict(read_state_dict(weights_file, "the Inception network"), strict=True)
        self.network = network.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.weights = str(weights)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Pool features [N, 2048] of images [N, 1 or 3, H, W] in [-1, 1]."""
        return self.features_and_logits(images)[0]

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool features [N, 2048] and class logits [N, 1008] (without the final bias, as the Inception
        Score uses them) from one pass of the network."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape)
            raise ValueError(f"InceptionFeatures expects images [N, 1 or 3, H, W] in [-1, 1], got {shape}")
        features, logits = [], []
        with torch.no_grad():
            for chunk in images.split(self.batch_size):
                pool, classes = self.network(to_uint8_rgb(chunk.to(self.device, torch.float32)))
                features.append(pool.to(torch.float32))
                logits.append(classes.to(torch.float32))
        if not features:
            return torch.zeros(0, self.dim, device=self.device), torch.zeros(0, 1008, device=self.device)
        return torch.cat(features), torch.cat(logits)


def read_state_dict(path: Path, what: str) -> dict:
    """The tensors of a weights file: ``.safetensors``, or ``.pth``/``.pt`` read with
    ``torch.load(weights_only=True)`` (a pickle that would build any other object or call a function is
    refused with ``pickle.UnpicklingError``: a file from the internet runs no code). ``what`` names the
    network in the error for an empty or non-dict file (ValueError)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors' own error type: a damaged or foreign file
            raise ValueError(f"{path}: not a readable .safetensors file ({exc})") from None
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or len(state) == 0:
        raise ValueError(f"{path}: expected a non-empty state dict of {what}")
    return state
