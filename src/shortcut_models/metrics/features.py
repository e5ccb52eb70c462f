"""Feature extractors for Fréchet distances: one small interface, three implementations.

Every extractor has a ``name``, a feature dimension ``dim`` and is called on a batch:
``extractor(images) -> [N, dim]`` float32. Images are float tensors in [-1, 1], ``[N, C, H, W]``
(the pixel convention of the whole project); :class:`Coordinates2D` takes 2-D points [N, 2] instead.
Extraction never tracks gradients.

- ``"fd-digits"`` -> :class:`DigitsFeatureNet`: a small CNN trained here on the digits train split
  (``shortcut_models.data.digits``); its 64-d penultimate layer gives the features, its head the
  class logits. Trained once (seconds on a CPU) and cached; see :func:`load_digits_feature_net`.
- ``"fid"`` -> :class:`InceptionFeatures`: the 2048-d pool features of the FID Inception-v3 network,
  taken from the PyPI package ``torch-fidelity`` (see the class for why that package).
- ``"coords"`` -> :class:`Coordinates2D`: identity features of 2-D toy points.

:func:`get_feature_extractor` builds one by name.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import os
import sys
import time
import types
import uuid
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F

from ..data import digits as digits_data

__all__ = [
    "FeatureExtractor",
    "DigitsNetRecipe",
    "DigitsFeatureNet",
    "default_cache_dir",
    "digits_feature_net_path",
    "train_digits_feature_net",
    "load_digits_feature_net",
    "test_accuracy",
    "InceptionFeatures",
    "Coordinates2D",
    "FEATURE_EXTRACTORS",
    "get_feature_extractor",
]


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps a batch of images in [-1, 1], ``[N, C, H, W]``, to float32 features ``[N, dim]``."""

    name: str
    dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


# ----------------------------------------------------------------------------------------------
# Digits feature network
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitsNetRecipe:
    """Everything that determines the trained digits network; its hash names the cache file.

    ``code_version`` is raised whenever the network or the training loop changes in a way that
    the other fields do not show, so that stale caches are never reused.
    """

    channels: tuple[int, int, int] = (32, 64, 128)
    feature_dim: int = 64
    dropout: float = 0.1
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_shift: int = 1
    seed: int = 0
    split_version: int = digits_data.SPLIT_VERSION
    code_version: int = 1

    def key(self) -> str:
        """First 16 hex digits of the SHA-256 of the recipe as sorted JSON."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class DigitsFeatureNet(nn.Module):
    """A small CNN for 8x8 digits: three 3x3 convolutions, then a ``feature_dim`` layer and a classifier.

    Layout: conv(1->c0) ReLU, conv(c0->c1) ReLU, maxpool 2 (4x4), conv(c1->c2) ReLU, maxpool 2 (2x2),
    flatten, linear -> features [N, feature_dim] (pre-activation: the FD features), then
    ReLU, dropout, linear -> logits [N, 10]. Input: images in [-1, 1], ``[N, 1, 8, 8]``.

    ``net(images)`` and ``net.features(images)`` give the features, ``net.logits(images)`` the
    class logits; all three run without gradients and in eval mode.
    """

    name = "fd-digits"

    def __init__(self, recipe: DigitsNetRecipe | None = None) -> None:
        super().__init__()
        self.recipe = recipe or DigitsNetRecipe()
        c0, c1, c2 = self.recipe.channels
        self.dim = self.recipe.feature_dim
        self.conv1 = nn.Conv2d(1, c0, 3, padding=1)
        self.conv2 = nn.Conv2d(c0, c1, 3, padding=1)
        self.conv3 = nn.Conv2d(c1, c2, 3, padding=1)
        self.embed = nn.Linear(c2 * 2 * 2, self.dim)
        self.dropout = nn.Dropout(self.recipe.dropout)
        self.head = nn.Linear(self.dim, digits_data.NUM_CLASSES)

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != digits_data.IMAGE_SHAPE:
            raise ValueError(f"DigitsFeatureNet expects images [N, 1, 8, 8] in [-1, 1], got {tuple(images.shape)}")
        return images.to(self.embed.weight.device, torch.float32)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)
        return self.embed(h.flatten(1))

    def _logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(F.relu(f)))

    def _run(self, images: torch.Tensor, want_logits: bool, batch_size: int = 4096) -> torch.Tensor:
        x = self._check(images)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = []
                for chunk in x.split(batch_size):
                    f = self._features(chunk)
                    out.append(self._logits_from_features(f) if want_logits else f)
                return torch.cat(out) if out else x.new_zeros(0, 10 if want_logits else self.dim)
        finally:
            self.train(was_training)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features [N, feature_dim] (float32, on the network's device)."""
        return self._run(images, want_logits=False)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits [N, 10] (float32, on the network's device)."""
        return self._run(images, want_logits=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


def default_cache_dir() -> Path:
    """Where trained helper networks are cached.

    ``$SHORTCUT_MODELS_CACHE`` when set, else ``$XDG_CACHE_HOME/shortcut_models`` when
    ``XDG_CACHE_HOME`` is set, else ``~/.cache/shortcut_models``.
    """
    explicit = os.environ.get("SHORTCUT_MODELS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "shortcut_models"


def digits_feature_net_path(cache_dir: str | os.PathLike | None = None, recipe: DigitsNetRecipe | None = None) -> Path:
    """The cache file of ``recipe``: ``<cache_dir>/digits-feature-net-<recipe key>.safetensors``."""
    recipe = recipe or DigitsNetRecipe()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"digits-feature-net-{recipe.key()}.safetensors"


def _random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels in each direction, filling with background (-1)."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    oy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, :]
    batch = torch.arange(n)[:, None, None]
    return padded[batch, 0, rows, cols].unsqueeze(1)


def train_digits_feature_net(recipe: DigitsNetRecipe | None = None) -> tuple[DigitsFeatureNet, dict]:
    """Train the digits network on the train split (CPU, seeded); returns (net, info).

    AdamW with a cosine-decayed learning rate, shuffled mini-batches and random 1-pixel shifts, all
    drawn from generators seeded by ``recipe.seed``; the global torch RNG is left as it was. Runs on
    one CPU thread (fastest for these tiny tensors, and independent of the machine's core count).
    ``info`` holds ``test_accuracy`` and ``train_seconds``.
    """
    recipe = recipe or DigitsNetRecipe()
    start = time.perf_counter()
    x, y = digits_data.load_digits("train")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and the result is the same on any machine
    try:
        net = _train(recipe, x, y)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    return net, {"test_accuracy": test_accuracy(net), "train_seconds": seconds}


def _train(recipe: DigitsNetRecipe, x: torch.Tensor, y: torch.Tensor) -> DigitsFeatureNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)  # initialisation and dropout
        net = DigitsFeatureNet(recipe)
        g = torch.Generator().manual_seed(recipe.seed + 1)  # order and shifts
        opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        steps_per_epoch = -(-len(x) // recipe.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.epochs * steps_per_epoch)
        net.train()
        for _ in range(recipe.epochs):
            order = torch.randperm(len(x), generator=g)
            for idx in order.split(recipe.batch_size):
                xb = _random_shift(x[idx], recipe.max_shift, g)
                loss = F.cross_entropy(net._logits_from_features(net._features(xb)), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    return net.eval()


def _save_atomic(net: DigitsFeatureNet, path: Path, info: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    metadata = {
        "recipe": net.recipe.to_json(),
        "recipe_key": net.recipe.key(),
        "test_accuracy": f"{info['test_accuracy']:.6f}",
        "train_seconds": f"{info['train_seconds']:.3f}",
    }
    try:
        save_file(state, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _load_cached(path: Path, recipe: DigitsNetRecipe) -> DigitsFeatureNet | None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if metadata.get("recipe_key") != recipe.key():
            return None
        with torch.random.fork_rng(devices=[]):  # leave the caller's random stream alone
            net = DigitsFeatureNet(recipe)
        net.load_state_dict(load_file(str(path)))
    except Exception as error:  # unreadable or foreign file: retrain and overwrite it
        warnings.warn(f"ignoring unreadable cached network {path} ({error!r}); training a new one", stacklevel=3)
        return None
    return net.eval()


def load_digits_feature_net(
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    recipe: DigitsNetRecipe | None = None,
) -> DigitsFeatureNet:
    """The trained digits feature network, from the cache or trained now and cached.

    The file is :func:`digits_feature_net_path` (``cache_dir`` defaults to :func:`default_cache_dir`),
    named by the hash of the recipe: a changed recipe trains and caches a new network. A new file
    is written under a temporary name and renamed into place, so concurrent or interrupted runs
    never leave a partial file. Training always runs on the CPU; the network is then moved to
    ``device``.
    """
    recipe = recipe or DigitsNetRecipe()
    path = digits_feature_net_path(cache_dir, recipe)
    net = _load_cached(path, recipe) if path.exists() else None
    if net is None:
        net, info = train_digits_feature_net(recipe)
        _save_atomic(net, path, info)
    return net.to(device).eval()


def test_accuracy(net: DigitsFeatureNet) -> float:
    """Fraction of the digits test split (300 images) that ``net`` classifies correctly."""
    x, y = digits_data.load_digits("test")
    pred = net.logits(x).argmax(dim=1).cpu()
    return float((pred == y).double().mean())


test_accuracy.__test__ = False  # a library function, not a pytest test


# ----------------------------------------------------------------------------------------------
# Inception-v3 (FID)
# ----------------------------------------------------------------------------------------------

_INCEPTION_HINT = (
    "the 'fid' feature extractor needs the PyPI package torch-fidelity; install it with "
    "`pip install torch-fidelity` (or `pip install --no-deps torch-fidelity` where torchvision "
    "does not work with the installed torch: its Inception network needs only torch)"
)


def _import_inception_module_alone(spec) -> types.ModuleType:
    """Import ``torch_fidelity.feature_extractor_inceptionv3`` without running the package's ``__init__``.

    The package's ``__init__`` imports every extractor it has, some of which import torchvision;
    the Inception module needs only torch. A bare stand-in parent module is put in
    ``sys.modules`` for the duration of the import and removed afterwards.
    """
    stand_in = types.ModuleType("torch_fidelity")
    stand_in.__path__ = list(spec.submodule_search_locations or [])
    stand_in.__package__ = "torch_fidelity"
    previous = sys.modules.get("torch_fidelity")
    sys.modules["torch_fidelity"] = stand_in
    try:
        return importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")
    finally:
        if sys.modules.get("torch_fidelity") is stand_in:
            if previous is None:
                del sys.modules["torch_fidelity"]
            else:
                sys.modules["torch_fidelity"] = previous


@lru_cache(maxsize=1)
def _inception_network_class() -> type:
    """torch-fidelity's FeatureExtractorInceptionV3, subclassed so it can be built without weights."""
    if importlib.util.find_spec("torch_fidelity") is None:
        raise ImportError(_INCEPTION_HINT)
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except Exception as package_error:  # torchvision missing or unusable with this torch
        try:
            module = _import_inception_module_alone(importlib.util.find_spec("torch_fidelity"))
        except Exception as module_error:
            raise ImportError(f"{_INCEPTION_HINT}; importing it failed: {package_error!r}") from module_error
        FeatureExtractorInceptionV3 = module.FeatureExtractorInceptionV3

    class _InceptionNetwork(FeatureExtractorInceptionV3):
        # The package's constructor always loads a state dict; an empty one means "keep the
        # random initialisation" (weights="random", or weights that are loaded afterwards).
        def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
            if len(state_dict) == 0:
                return None
            return super().load_state_dict(state_dict, strict=strict, assign=assign)

    return _InceptionNetwork


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
      - ``"download"``: torch-fidelity's own download and cache (``$TORCH_HOME/hub/checkpoints``).
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
        if weights not in ("random", "download"):
            weights_file = Path(weights).expanduser()
            if not weights_file.is_file():
                raise FileNotFoundError(f"Inception weights file not found: {weights_file}")
        network_class = _inception_network_class()
        source = None if weights == "download" else _empty_state_dict_file()
        with torch.random.fork_rng(devices=[]):  # "random" weights are the same every time
            torch.manual_seed(0)
            network = network_class("shortcut-models-inception-v3", ["2048"], feature_extractor_weights_path=source)
        if weights_file is not None:
            network.load_state_dict(_read_state_dict(weights_file), strict=True)
        self.network = network.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.weights = str(weights)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape)
            raise ValueError(f"InceptionFeatures expects images [N, 1 or 3, H, W] in [-1, 1], got {shape}")
        out = []
        with torch.no_grad():
            for chunk in images.split(self.batch_size):
                x = chunk.to(self.device, torch.float32)
                pixels = torch.floor((x + 1.0) * 127.5 + 0.5).clamp_(0, 255).to(torch.uint8)
                if pixels.shape[1] == 1:
                    pixels = pixels.expand(-1, 3, -1, -1).contiguous()
                out.append(self.network(pixels)[0].to(torch.float32))
        if not out:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.cat(out)


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or len(state) == 0:
        raise ValueError(f"{path}: expected a non-empty state dict of the Inception network")
    return state


# ----------------------------------------------------------------------------------------------
# 2-D points and the factory
# ----------------------------------------------------------------------------------------------


class Coordinates2D:
    """Identity features for 2-D toy data: points [N, 2] -> float32 [N, 2] (``name = "coords"``)."""

    name = "coords"
    dim = 2

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        points = torch.as_tensor(points)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"Coordinates2D expects points [N, 2], got {tuple(points.shape)}")
        return points.detach().to(torch.float32).clone()


FEATURE_EXTRACTORS = {
    "fd-digits": load_digits_feature_net,
    "fid": InceptionFeatures,
    "coords": Coordinates2D,
}


def get_feature_extractor(name: str, **kwargs) -> FeatureExtractor:
    """Build the extractor called ``name`` ("fd-digits", "fid" or "coords"); kwargs go to its constructor.

    "fd-digits" takes ``cache_dir``, ``device``, ``recipe``; "fid" takes ``weights``, ``device``,
    ``batch_size``; "coords" takes none.
    """
    if name not in FEATURE_EXTRACTORS:
        raise ValueError(f"unknown feature extractor {name!r}; choose from {', '.join(FEATURE_EXTRACTORS)}")
    return FEATURE_EXTRACTORS[name](**kwargs)
