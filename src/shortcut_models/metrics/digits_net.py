"""The digits feature network: a small CNN trained on the digits train split, shipped with the package.

Its 64-d penultimate layer gives the features of the "fd-digits" Fréchet distance; its head gives
class logits, used for the class accuracy of class-conditional samples. Training is deterministic
on one machine (seed 0, one CPU thread, seconds), but other CPUs round differently, so a network
trained on each machine would give slightly different numbers. The trained weights of the current
recipe therefore ship with the package (``weights/digits-feature-net-<recipe key>.safetensors``)
and are what :func:`load_digits_feature_net` loads: fd-digits is the same everywhere. A recipe with
no shipped file (a changed recipe, before the file is regenerated) is trained at first use and
cached in the user's cache directory under a name keyed by the hash of the recipe.

Regenerating the shipped file after a recipe change (maintainers)::

    make digits-weights    # python -c "from shortcut_models.metrics.digits_net import write_shipped; write_shipped()"

trains the current recipe (:func:`write_shipped`), writes its file into ``weights/`` and removes the files of other recipes;
``tests/metrics/test_digits_net.py::test_shipped_network_matches_its_recipe`` (slow) retrains and
checks that the shipped file still matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..data import digits as digits_data


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


SHIPPED_DIR = Path(__file__).resolve().parent / "weights"  # package data (pyproject.toml)


def _file_name(recipe: DigitsNetRecipe) -> str:
    return f"digits-feature-net-{recipe.key()}.safetensors"


def digits_feature_net_path(cache_dir: str | os.PathLike | None = None, recipe: DigitsNetRecipe | None = None) -> Path:
    """The cache file of ``recipe``: ``<cache_dir>/digits-feature-net-<recipe key>.safetensors``."""
    recipe = recipe or DigitsNetRecipe()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / _file_name(recipe)


def shipped_digits_feature_net_path(recipe: DigitsNetRecipe | None = None) -> Path:
    """Where the package ships the trained network of ``recipe`` (the file may not exist for a new recipe)."""
    return SHIPPED_DIR / _file_name(recipe or DigitsNetRecipe())


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
    except Exception as error:  # unreadable or foreign file: the caller falls back (cache, then training)
        warnings.warn(f"ignoring unreadable network file {path} ({error!r})", stacklevel=3)
        return None
    return net.eval()


def load_digits_feature_net(
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    recipe: DigitsNetRecipe | None = None,
) -> DigitsFeatureNet:
    """The trained digits feature network: the shipped file, else the cache, else trained now and cached.

    The shipped file (:func:`shipped_digits_feature_net_path`) is used whenever the package holds one for
    ``recipe`` (the default recipe's always), so no training happens and every machine gets the same
    weights. Otherwise the network is read from :func:`digits_feature_net_path` (``cache_dir`` defaults to
    :func:`default_cache_dir`), or trained now with a one-line note and cached there: a new file is
    written under a temporary name and renamed into place, so concurrent or interrupted runs never leave
    a partial file. Training always runs on the CPU; the network is then moved to ``device``.
    """
    recipe = recipe or DigitsNetRecipe()
    shipped, path = shipped_digits_feature_net_path(recipe), digits_feature_net_path(cache_dir, recipe)
    net = _load_cached(shipped, recipe) if shipped.is_file() else None
    if net is None and path.exists():
        net = _load_cached(path, recipe)
    if net is None:
        print(
            f"note: no digits feature network is shipped for recipe {recipe.key()}; training one here (seconds) "
            f"into {path} (its numbers may differ in the last digits on other CPUs)",
            file=sys.stderr,
        )
        net, info = train_digits_feature_net(recipe)
        _save_atomic(net, path, info)
    return net.to(device).eval()


def test_accuracy(net: DigitsFeatureNet) -> float:
    """Fraction of the digits test split (300 images) that ``net`` classifies correctly."""
    x, y = digits_data.load_digits("test")
    pred = net.logits(x).argmax(dim=1).cpu()
    return float((pred == y).double().mean())


test_accuracy.__test__ = False  # a library function, not a pytest test


def write_shipped(recipe: DigitsNetRecipe | None = None, directory: Path = SHIPPED_DIR) -> Path:
    """Train ``recipe`` and write its file into ``directory`` (the package's ``weights/``), removing the
    files of other recipes there; returns the path. For maintainers, after a recipe change (``make digits-weights``)."""
    recipe = recipe or DigitsNetRecipe()
    net, info = train_digits_feature_net(recipe)
    path = directory / _file_name(recipe)
    _save_atomic(net, path, info)
    for old in directory.glob("digits-feature-net-*.safetensors"):
        if old != path:
            old.unlink()
    return path
