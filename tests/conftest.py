"""Shared fixtures and helpers (pytest runs with --import-mode=importlib: tests import nothing from
each other; what several files need lives here)."""

import json
import struct
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_random():
    """Every test starts from the same global random state (torch, numpy, random), whichever tests ran
    before it: a draw without an explicit generator cannot depend on the order tests run in."""
    import random

    import numpy as np

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield


def pytest_addoption(parser):
    parser.addoption(
        "--reverse",
        action="store_true",
        help="run the tests in reverse file order (with -p no:randomly): an order dependence shows up",
    )


def pytest_configure(config):
    """The same allocator settings as the `shortcut` command (see shortcut_models.runtime)."""
    from shortcut_models.runtime import tune_allocator

    tune_allocator()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        items.reverse()


def pytest_terminal_summary(terminalreporter, config):
    """Say which order the tests ran in, and how to run that order again (pytest-randomly's seed)."""
    seed = getattr(config.option, "randomly_seed", None)
    if config.getoption("--reverse"):
        terminalreporter.write_line("test order: reverse file order (--reverse)")
    elif seed is not None and config.pluginmanager.hasplugin("randomly"):
        terminalreporter.write_line(
            f"test order: random, --randomly-seed={seed} repeats it; -p no:randomly runs the tests in file order"
        )


def trainer_tensors(trainer) -> dict[str, torch.Tensor]:
    """Copies of every tensor a trainer's state holds: weights, EMA weights, optimizer moments."""
    out = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    out.update({f"ema.{k}": v.clone() for k, v in trainer.ema.module.state_dict().items()})
    for i, st in enumerate(trainer.optimizer.state.values()):
        for k, v in st.items():
            out[f"opt.{i}.{k}"] = v.clone() if torch.is_tensor(v) else torch.tensor(v)
    return out


@pytest.fixture
def assert_same_state():
    """``assert_same_state(a, b)``: model, EMA and optimizer tensors of two trainers are bit-identical."""

    def check(a_trainer, b_trainer) -> None:
        a, b = trainer_tensors(a_trainer), trainer_tensors(b_trainer)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k

    return check


# ------------------------------------------------------------------------------ tiny runs


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks: one thread is fastest, and two threads crawl when other work shares the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# A class-conditional digits run with DiT-Nano (8x8 images): a few steps train in about a second on a CPU.
NANO = ["model=DiT-Nano", "batch_size=16", "log_every=2", "warmup_steps=0", "logger=none", "sample_steps=[1]"]


@pytest.fixture(scope="session")
def nano_args() -> list[str]:
    """The overrides of the tiny digits DiT-Nano run (:data:`NANO`), as a fresh list, e.g. for the command line."""
    return list(NANO)


@pytest.fixture(scope="session")
def nano_config():
    """``nano_config(*extra, objective="shortcut", preset="digits")``: the config of the tiny DiT-Nano run,
    ``extra`` overrides applied after :data:`NANO` (a key given again wins)."""
    from shortcut_models.config import build_config

    def build(*extra: str, objective: str = "shortcut", preset: str = "digits"):
        return build_config(preset, objective, None, [*NANO, *extra])

    return build


def random_batch(b=64, shape=(3,), seed=0):
    """Data and noise of ``b`` rows of ``shape``, and a generator for the objective's draws (all seeded)."""
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, *shape, generator=g),
        torch.randn(b, *shape, generator=g),
        torch.Generator().manual_seed(seed + 1),
    )


@pytest.fixture(scope="session")
def make_batch():
    """``make_batch(b=64, shape=(3,), seed=0)`` -> ``(x1, x0, generator)``: see :func:`random_batch`."""
    return random_batch


# ------------------------------------------------------------------------- images, autoencoder


def write_png(path, rng, size=(40, 36)) -> None:
    """A random RGB PNG of ``size`` (width, height) at ``path`` (parents created), drawn from numpy ``rng``."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="session")
def png():
    """``png(path, rng, size=(40, 36))``: see :func:`write_png`."""
    return write_png


@pytest.fixture(scope="session")
def vae_dir(tmp_path_factory):
    """A tiny randomly initialised diffusers AutoencoderKL saved with ``save_pretrained`` (32x32 RGB images to
    4x16x16 latents, scaling factor 0.18215); skips the test without diffusers."""
    AutoencoderKL = pytest.importorskip("diffusers").AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=0.18215,
    )
    out = tmp_path_factory.mktemp("tiny_vae")
    vae.save_pretrained(out)
    return out


@pytest.fixture
def inception_weights(tmp_path):
    """A local Inception-v3 weights file with random weights (FID without a download); skips the test
    without torch-fidelity."""
    from shortcut_models.metrics.inception import InceptionFeatures

    try:
        network = InceptionFeatures(weights="random").network
    except ImportError:
        pytest.skip("torch-fidelity is not installed")
    weights = tmp_path / "inception.pth"
    torch.save(network.state_dict(), weights)
    return weights


@pytest.fixture
def dinov2_weights(tmp_path):
    """A tiny DINOv2 weights file in the official layout (width 64, one block, a 4x4 stored grid, random
    values): fd-dinov2 without the real file, in a fraction of a second per batch."""
    from shortcut_models.metrics.dinov2 import random_state_dict

    weights = tmp_path / "dinov2_tiny.pth"
    torch.save(random_state_dict(width=64, depth=1, grid=4, seed=5), weights)
    return weights


@pytest.fixture
def tiny_latents(vae_dir, tmp_path):
    """Four random 32x32 PNGs in tmp_path/images and their latent cache (tmp_path/cache, 4x16x16 latents)
    made with the tiny VAE of :func:`vae_dir`: returns (images, cache)."""
    import numpy as np

    from shortcut_models.autoencoders import StableDiffusionVAE
    from shortcut_models.data.latents import encode_folder

    images, cache = tmp_path / "images", tmp_path / "cache"
    rng = np.random.default_rng(0)
    for i in range(4):
        write_png(images / f"{i}.png", rng, size=(32, 32))
    encode_folder(images, cache, StableDiffusionVAE(str(vae_dir)), resolution=32, batch_size=4, progress=False)
    return images, cache


# --- Weights & Biases, offline -----------------------------------------------------------------


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """W&B in offline mode with every directory it writes inside tmp_path; returns WANDB_DIR."""
    wandb = pytest.importorskip("wandb")
    wandb.teardown()  # settings of an earlier test (e.g. its WANDB_DIR) live in a process-wide singleton
    for var, sub in [
        ("WANDB_DIR", "wandb_dir"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_DATA_DIR", "data"),
    ]:
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_RUN_ID", "WANDB_RESUME", "WANDB_PROJECT", "WANDB_NAME", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path / "wandb_dir"
    wandb.teardown()


def wandb_records(path):
    """The records of a .wandb file (LevelDB log format after a 7-byte W&B header), as protobufs."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", "unknown .wandb file format"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def finished_records(path, timeout: float = 60.0):
    """The records of a .wandb file once its session's final ("exit") record is on disk.

    W&B's service process writes the file; on a loaded machine its last records can reach the disk a
    moment after ``finish()`` returned. Reads again until the exit record is there (or ``timeout``).
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        records = list(wandb_records(path))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def offline_history(wandb_dir):
    """(run id, directory name, {key: value}) of each history row, over all offline runs in order."""
    rows = []
    for run_dir in sorted((wandb_dir / "wandb").glob("offline-run-*")):
        for data_file in run_dir.glob("run-*.wandb"):
            for record in finished_records(data_file):
                if record.WhichOneof("record_type") == "history":
                    row = {
                        item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.history.item
                    }
                    rows.append((data_file.stem.removeprefix("run-"), run_dir.name, row))
    return rows


@pytest.fixture
def wandb_next_second():
    """``wandb_next_second()``: wait until the wall clock enters a new second. An offline W&B session
    writes into offline-run-<date>_<hhmmss>-<id>: two sessions of one run started within the same
    second would share that directory, and the second would overwrite the first's records."""

    def wait() -> None:
        import time

        time.sleep(1.001 - time.time() % 1.0)

    return wait


@pytest.fixture
def wandb_history():
    """``wandb_history(wandb_dir)``: (run id, directory name, {key: value}) of each logged history row
    of the offline runs under ``wandb_dir``, in order (see :func:`offline_history`)."""
    return offline_history


@pytest.fixture(scope="session")
def authors_code():
    """The authors' JAX code (tests/README-style differential tests): its root directory on sys.path.

    Read from ``SHORTCUT_REFERENCE_CODE`` (``.ci/run`` points it at ../shared/reference/shortcut-models);
    skips with the reason when it is unset or jax/flax/einops are missing. Applies the one shim their
    model.py needs with current jax (``jax._src.core.as_named_shape`` was removed: the identity).
    """
    import os
    import sys
    from pathlib import Path

    root = os.environ.get("SHORTCUT_REFERENCE_CODE")
    if not root:
        pytest.skip("SHORTCUT_REFERENCE_CODE is unset: the authors' code is needed for this comparison")
    if not (Path(root) / "model.py").is_file():
        pytest.fail(f"SHORTCUT_REFERENCE_CODE={root} holds no model.py (the authors' repository root)")
    for name in ("jax", "flax", "einops", "optax"):
        pytest.importorskip(name, reason=f"the authors' code needs {name} (pip install -e '.[reference]')")
    import jax

    jax.config.update("jax_platforms", "cpu")
    if not hasattr(jax._src.core, "as_named_shape"):
        jax._src.core.as_named_shape = lambda shape: shape
    if root not in sys.path:
        sys.path.insert(0, root)
    return Path(root)


def reference_root(folder: str) -> Path:
    """The folder ``folder`` of ../shared/reference (beside ``SHORTCUT_REFERENCE_CODE``), or a skip."""
    import os

    root = os.environ.get("SHORTCUT_REFERENCE_CODE")
    if not root:
        pytest.skip(f"SHORTCUT_REFERENCE_CODE is unset: the reference code {folder}/ is needed for this comparison")
    path = Path(root).resolve().parent / folder
    if not path.is_dir():
        pytest.fail(f"{path} is missing (SHORTCUT_REFERENCE_CODE/../{folder}, see ../shared/reference/README.md)")
    return path


@pytest.fixture(scope="session")
def esc_code():
    """ESC's PyTorch code (explicit-shortcut/): a function ``module(name)`` importing e.g. "loss.imm_loss".

    Its modules import ``utils`` and ``loss`` as top-level packages and ``torchvision.utils.make_grid``
    (only for pictures): the root goes on sys.path for the import, torchvision is stubbed when absent, and
    the generic names are taken out of sys.modules again so they cannot shadow anything else.
    """
    import importlib
    import sys
    import types

    root = reference_root("explicit-shortcut")
    pytest.importorskip("einops", reason="ESC's code needs einops")
    loaded: dict[str, types.ModuleType] = {}

    def module(name: str) -> types.ModuleType:
        if name in loaded:
            return loaded[name]
        saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("utils", "loss", "arch")}
        for k in saved:
            del sys.modules[k]
        stubbed = []
        if "torchvision" not in sys.modules:
            try:
                import torchvision  # noqa: F401
            except Exception:
                stub = types.ModuleType("torchvision")
                stub_utils = types.ModuleType("torchvision.utils")
                stub_utils.make_grid = lambda *a, **k: None
                stub.utils = stub_utils
                sys.modules["torchvision"], sys.modules["torchvision.utils"] = stub, stub_utils
                stubbed = ["torchvision", "torchvision.utils"]
        sys.path.insert(0, str(root))
        try:
            loaded[name] = importlib.import_module(name)
        finally:
            sys.path.remove(str(root))
            for k in [k for k in sys.modules if k.split(".")[0] in ("utils", "loss", "arch")]:
                del sys.modules[k]
            sys.modules.update(saved)
            for k in stubbed:
                sys.modules.pop(k, None)
        return loaded[name]

    return module


@pytest.fixture(scope="session")
def jax_reference():
    """A function ``root(folder)``: the JAX reference folder (meanflow/, imeanflow/) on sys.path, jax on the CPU."""
    import sys

    for name in ("jax", "flax"):
        pytest.importorskip(name, reason=f"the reference code needs {name} (pip install -e '.[reference]')")
    import jax

    jax.config.update("jax_platforms", "cpu")

    def root(folder: str) -> Path:
        path = reference_root(folder)
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
        return path

    return root
