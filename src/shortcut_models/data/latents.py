"""Latent cache: an image folder encoded once by an autoencoder, then served as training batches.

Cache directory (``encode_folder``):
- ``manifest.json``: arguments (VAE, scaling factor, resolution, latent shape, shard size, class
  names, file-list hash), image/entry counts, the shards, skipped files with reasons, a version.
- ``files.txt``: relative paths of the scanned files, one a line; a shard's ``index`` points here.
- ``shard_KKKKK.safetensors``: images ``[K * shard_size, (K + 1) * shard_size)`` of ``files.txt``;
  tensors ``mean``, ``std`` (float16, scaled posterior: x1 = mean + std * eps), ``label`` (int64),
  ``flip`` (uint8, 1 = mirrored), ``index`` (int64). Every readable image gives two entries, itself
  then its horizontal mirror. Unreadable files are skipped, listed, and warned about.
Shards are written to a temporary name and renamed, each tagged with a fingerprint of the arguments:
a rerun skips finished shards, so an interrupted and resumed run leaves the same bytes as an
uninterrupted one (for the same batch size and device). Labels are 0 for flat (unconditional) folders.

:class:`LatentSource` serves a finished cache, reading the ``mean``/``std`` rows of each batch from
the shards (``shard_reader.py``); :func:`describe_cache` reads the manifest only;
:func:`write_random_cache` writes a cache of random latents in this layout, without images or VAE.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from .. import seeding
from ..autoencoders import Autoencoder, build_autoencoder
from ..capacity import check_room, values
from ..errors import UserError
from ..images import from_uint8
from ..outputs import writing
from ..runlock import LOCK_FILE
from ..validation import check_int
from .folder import IMAGE_EXTENSIONS, UnreadableImage, check_resolution, load_image_uint8, scan_folder
from .info import SourceInfo
from .order import epoch_indices
from .shard_reader import ShardError, ShardReader

CACHE_VERSION = 1
MANIFEST = "manifest.json"
FILE_LIST = "files.txt"


def shard_name(k: int) -> str:
    return f"shard_{k:05d}.safetensors"


def _write_atomic(path: Path, write) -> None:
    """``write(tmp_path)`` then rename over ``path``: readers never see half a file (``outputs.writing``)."""
    with writing(path) as tmp:
        write(tmp)


def _write_json(path: Path, data: dict) -> None:
    _write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def _prepare_out_dir(out: Path, args: dict) -> None:
    """Create ``out`` or check that the cache in it was made with ``args``; drop stale temp files."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file, not a directory")
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {manifest_path}: {exc}") from None
        for key, value in args.items():
            if old.get(key) != value:
                what = (
                    "the list of image files"
                    if key in ("files_sha256", "num_files")
                    else f"{key} {old.get(key)!r} != {value!r}"
                )
                raise UserError(
                    f"{out} holds a latent cache made with different arguments ({what}); choose another --out or delete it"
                )
    elif out.is_dir() and any(not p.name.endswith(".tmp") and p.name != LOCK_FILE for p in out.iterdir()):
        raise UserError(
            f"{out} is not empty and holds no latent cache ({MANIFEST} missing); choose an empty or new --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp"):
        stale.unlink()


def _shard_info(path: Path, fingerprint: str, k: int) -> dict | None:
    """The metadata of a finished shard ``k`` made with ``fingerprint``, else None."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            info = json.loads((f.metadata() or {})["shard_info"])
    except Exception:  # noqa: BLE001 - truncated or foreign file: encode it again
        return None
    return info if info.get("fingerprint") == fingerprint and info.get("shard") == k else None


def _write_shard(path: Path, tensors: dict[str, torch.Tensor], info: dict) -> None:
    """The shard as bytes, then through ``outputs.writing`` (safetensors' own ``save_file`` writes through
    a temporary file of its own, ``.tmpXXXXXX``, that a kill leaves behind)."""
    meta = {"shard_info": json.dumps(info, sort_keys=True)}  # one key: the header bytes stay deterministic
    data = safetensors_bytes(tensors, metadata=meta)
    _write_atomic(path, lambda tmp: tmp.write_bytes(data))


def _load(path: Path, resolution: int) -> np.ndarray | str:
    """Pixels, or the reason the file cannot be read."""
    try:
        return load_image_uint8(path, resolution)
    except UnreadableImage as exc:
        return exc.reason


def _encode_shard(
    k: int,
    items: list[tuple[Path, int]],
    rel: list[str],
    autoencoder: Autoencoder,
    resolution: int,
    batch_size: int,
    shard_size: int,
    pool: ThreadPoolExecutor,
    bar,
    fingerprint: str,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Encode images ``[k * shard_size, (k + 1) * shard_size)`` and their mirrors."""
    start = k * shard_size
    stop = min(start + shard_size, len(items))
    batches = [range(i, min(i + batch_size, stop)) for i in range(start, stop, batch_size)]
    pending: dict[int, list[Future]] = {}

    def prefetch(b: int) -> None:
        if b < len(batches):
            pending[b] = [pool.submit(_load, items[i][0], resolution) for i in batches[b]]

    parts: dict[str, list[torch.Tensor]] = {"mean": [], "std": [], "label": [], "flip": [], "index": []}
    skipped = []
    prefetch(0)
    prefetch(1)
    for b, batch in enumerate(batches):
        loaded = [f.result() for f in pending.pop(b)]
        prefetch(b + 2)
        good = [i for i, px in zip(batch, loaded) if not isinstance(px, str)]
        for i, px in zip(batch, loaded):
            if isinstance(px, str):
                skipped.append({"file": rel[i], "reason": px})
                warnings.warn(f"skipping unreadable image {rel[i]}: {px}", stacklevel=3)
        if good:
            x = from_uint8(np.stack([px for px in loaded if not isinstance(px, str)]))
            mean, std = autoencoder.encode(torch.cat([x, x.flip(-1)]))
            n = len(good)
            order = torch.stack([torch.arange(n), torch.arange(n, 2 * n)], dim=1).flatten()  # image, mirror, ...
            parts["mean"].append(mean.cpu()[order].half())
            parts["std"].append(std.cpu()[order].half())
            parts["label"].append(torch.tensor([items[i][1] for i in good], dtype=torch.int64).repeat_interleave(2))
            parts["flip"].append(torch.tensor([0, 1], dtype=torch.uint8).repeat(n))
            parts["index"].append(torch.tensor(good, dtype=torch.int64).repeat_interleave(2))
        bar.update(len(batch))
    latent = tuple(autoencoder.latent_shape((3, resolution, resolution)))
    empty = {
        "mean": torch.empty(0, *latent, dtype=torch.float16),
        "std": torch.empty(0, *latent, dtype=torch.float16),
        "label": torch.empty(0, dtype=torch.int64),
        "flip": torch.empty(0, dtype=torch.uint8),
        "index": torch.empty(0, dtype=torch.int64),
    }
    tensors = {key: torch.cat(v).contiguous() if v else empty[key] for key, v in parts.items()}
    entries = int(tensors["label"].shape[0])
    info = {
        "fingerprint": fingerprint,
        "shard": k,
        "files": stop - start,
        "images": entries // 2,
        "entries": entries,
        "skipped": skipped,
    }
    return tensors, info


def _finish(out: Path, args: dict, fingerprint: str, shards: list[dict], skipped: list[dict]) -> dict:
    """Write the manifest of a complete cache (``shards``: file, files, images, entries); returns it."""
    num_images = sum(shard["images"] for shard in shards)
    manifest = {
        **args,
        "fingerprint": fingerprint,
        "complete": True,
        "file_list": FILE_LIST,
        "num_images": num_images,
        "num_entries": 2 * num_images,
        "num_skipped": len(skipped),
        "skipped": skipped,
        "shards": shards,
    }
    _write_json(out / MANIFEST, manifest)
    return manifest


def encode_folder(
    data_dir: str | Path,
    out_dir: str | Path,
    autoencoder: Autoencoder,
    resolution: int = 256,
    batch_size: int = 32,
    shard_size: int = 1024,
    progress: bool = True,
    workers: int | None = None,
) -> dict:
    """Encode every image of ``data_dir`` (and its mirror) into a latent cache in ``out_dir``.

    ``batch_size`` and ``shard_size`` count images (each gives two entries); ``workers`` threads
    decode and resize images. Resumes an interrupted run; returns the manifest.
    """
    from tqdm.auto import tqdm

    try:
        check_resolution(resolution)
        for name, value in (("batch size", batch_size), ("shard size", shard_size), ("workers", workers or 1)):
            check_int(name, value, low=1)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    data_dir, out = Path(data_dir), Path(out_dir)
    items, class_names = scan_folder(data_dir)
    if not items:
        exts = ", ".join(sorted(e[1:] for e in IMAGE_EXTENSIONS))
        raise UserError(f"no images ({exts}) found in {str(data_dir)!r}")
    rel = [path.relative_to(data_dir).as_posix() for path, _ in items]
    file_list = "".join(f"{r}\n" for r in rel)
    args = {
        "version": CACHE_VERSION,
        "vae": autoencoder.name,
        "scaling_factor": float(autoencoder.scaling_factor),
        "resolution": resolution,
        "latent_shape": list(autoencoder.latent_shape((3, resolution, resolution))),
        "shard_size": shard_size,
        "flip": True,
        "class_names": class_names,
        "num_classes": len(class_names),
        "num_files": len(items),
        "files_sha256": hashlib.sha256(file_list.encode()).hexdigest(),
    }
    fingerprint = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    _prepare_out_dir(out, args)
    # the manifest first: a cache killed at any later moment is recognised (and resumed) by the next start
    _write_json(out / MANIFEST, {**args, "fingerprint": fingerprint, "complete": False})
    _write_atomic(out / FILE_LIST, lambda p: p.write_text(file_list))

    num_shards = -(-len(items) // shard_size)
    todo = [k for k in range(num_shards) if _shard_info(out / shard_name(k), fingerprint, k) is None]
    done_files = len(items) - sum(min(shard_size, len(items) - k * shard_size) for k in todo)
    entry_bytes = 2 * 2 * values(args["latent_shape"]) + 17  # float16 mean and std; label, flip, index
    disk = 2 * entry_bytes * (len(items) - done_files)  # every image and its mirror
    check_room(f"encoding {len(items) - done_files} images", disk=disk, where=out)
    with (
        tqdm(total=len(items), initial=done_files, desc="encode", unit="img", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool,
    ):
        for k in todo:
            tensors, info = _encode_shard(
                k, items, rel, autoencoder, resolution, batch_size, shard_size, pool, bar, fingerprint
            )
            _write_shard(out / shard_name(k), tensors, info)

    infos = [_shard_info(out / shard_name(k), fingerprint, k) for k in range(num_shards)]
    if any(info is None for info in infos):
        raise RuntimeError(f"a shard of {out} changed while encoding")
    skipped = [s for info in infos for s in info["skipped"]]
    num_images = sum(info["images"] for info in infos)
    if num_images == 0:
        first = f" (first: {skipped[0]['file']}: {skipped[0]['reason']})" if skipped else ""
        raise UserError(f"none of the {len(items)} image files in {str(data_dir)!r} could be read{first}")
    shards = [
        {"file": shard_name(k), "files": i["files"], "images": i["images"], "entries": i["entries"]}
        for k, i in enumerate(infos)
    ]
    return _finish(out, args, fingerprint, shards, skipped)


def write_random_cache(
    out_dir: str | Path,
    num_files: int,
    latent_shape: tuple[int, ...] = (4, 32, 32),
    shard_size: int = 1024,
    num_classes: int = 0,
    skip: Iterable[int] = (),
    seed: int = 0,
) -> dict:
    """A finished latent cache of random posteriors in ``out_dir``, made without images or VAE (tests, benchmarks).

    It has the layout ``encode_folder`` writes, with ``vae`` "random" (nothing to decode with), a
    resolution of 8x the latent width, files named ``img_NNNNNNN.png`` and labels ``file % num_classes``
    (0 when ``num_classes`` is 0). File numbers in ``skip`` count as unreadable, so their shards hold
    fewer entries. Entry values: ``mean`` ~ N(0, 1), ``std`` uniform in [0.1, 0.2), seeded by (seed, shard).
    ``out_dir`` must be new or empty. Returns the manifest.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty; choose an empty or new directory")
    out.mkdir(parents=True, exist_ok=True)
    skip = {int(i) for i in skip}
    rel = [f"img_{i:07d}.png" for i in range(num_files)]
    file_list = "".join(f"{r}\n" for r in rel)
    args = {
        "version": CACHE_VERSION,
        "vae": "random",
        "scaling_factor": 1.0,
        "resolution": 8 * int(latent_shape[-1]),
        "latent_shape": [int(s) for s in latent_shape],
        "shard_size": shard_size,
        "flip": True,
        "class_names": [f"class_{c}" for c in range(num_classes)],
        "num_classes": num_classes,
        "num_files": num_files,
        "files_sha256": hashlib.sha256(file_list.encode()).hexdigest(),
    }
    fingerprint = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    _write_atomic(out / FILE_LIST, lambda p: p.write_text(file_list))
    shards, skipped = [], []
    for k, start in enumerate(range(0, num_files, shard_size)):
        files = range(start, min(start + shard_size, num_files))
        good = torch.tensor([i for i in files if i not in skip], dtype=torch.int64)
        missed = [{"file": rel[i], "reason": "skipped on purpose (random cache)"} for i in files if i in skip]
        skipped += missed
        gen = seeding.generator(seed, k)
        n = 2 * len(good)
        tensors = {
            "mean": torch.randn(n, *latent_shape, generator=gen).half(),
            "std": (0.1 + 0.1 * torch.rand(n, *latent_shape, generator=gen)).half(),
            "label": (good % max(num_classes, 1)).repeat_interleave(2),
            "flip": torch.tensor([0, 1], dtype=torch.uint8).repeat(len(good)),
            "index": good.repeat_interleave(2),
        }
        info = {
            "fingerprint": fingerprint,
            "shard": k,
            "files": len(files),
            "images": len(good),
            "entries": n,
            "skipped": missed,
        }
        _write_shard(out / shard_name(k), tensors, info)
        shards.append({"file": shard_name(k), "files": len(files), "images": len(good), "entries": n})
    return _finish(out, args, fingerprint, shards, skipped)


def read_manifest(cache_dir: str | Path) -> dict:
    """The manifest of a finished latent cache; UserError if missing, unfinished or of another version."""
    path = Path(cache_dir) / MANIFEST
    if not path.is_file():
        raise UserError(
            f"no latent cache in {str(cache_dir)!r} ({MANIFEST} missing); create one with `shortcut encode`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if manifest.get("version") != CACHE_VERSION:
        raise UserError(f"{path} has cache version {manifest.get('version')!r}, expected {CACHE_VERSION}; encode again")
    if not manifest.get("complete"):
        raise UserError(
            f"latent cache {str(cache_dir)!r} is unfinished; rerun `shortcut encode` with the same arguments"
        )
    return manifest


def _manifest_error(cache_dir: str | Path, exc: Exception) -> UserError:
    return UserError(f"{Path(cache_dir) / MANIFEST} is damaged ({type(exc).__name__}: {exc}); encode again")


def describe_cache(cache_dir: str | Path, name: str | None = None) -> SourceInfo:
    """The shapes, classes and VAE of a latent cache, from its manifest alone (no shard is opened)."""
    return _manifest_info(read_manifest(cache_dir), cache_dir, name)


def _manifest_info(manifest: dict, cache_dir: str | Path, name: str | None) -> SourceInfo:
    try:
        resolution = int(manifest["resolution"])
        return SourceInfo(
            name=name or f"latents:{cache_dir}",
            shape=tuple(int(s) for s in manifest["latent_shape"]),
            num_classes=int(manifest["num_classes"]),
            data_shape=(3, resolution, resolution),
            autoencoder=str(manifest["vae"]),
            scaling_factor=float(manifest["scaling_factor"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _manifest_error(cache_dir, exc) from None


class LatentSource:
    """A finished latent cache as a data source (see data/sources.py), read from disk on demand.

    Only the per-entry metadata (``label`` int64, ``flip`` uint8, ``index`` int64) is held in
    memory; the float16 ``mean``/``std`` rows a batch needs are read from the shard files, so a
    process needs memory of the order of a batch, not of the cache. Entries (images and mirrors)
    are visited in the epoch permutations of :func:`order.epoch_indices`; the batch of ``step`` is a
    posterior sample ``mean + std * eps`` with ``eps`` from the generator ``(seed, data stream,
    step, 1)``: a pure function of (step, batch_size, seed). float32 latents, int64 labels (0 for
    unconditional caches, whose num_classes is 0).
    """

    def __init__(self, cache_dir: str | Path, name: str | None = None) -> None:
        self.cache_dir = root = Path(cache_dir)
        self.name = name or f"latents:{cache_dir}"
        self.manifest = manifest = read_manifest(root)
        self.info = _manifest_info(manifest, root, self.name)
        self.shape, self.num_classes, self.image_shape = self.info.shape, self.info.num_classes, self.info.data_shape
        self.autoencoder_spec, self.scaling_factor = self.info.autoencoder, self.info.scaling_factor
        try:
            self.class_names = list(manifest["class_names"])
            files = [root / str(shard["file"]) for shard in manifest["shards"]]
            counts = [int(shard["entries"]) for shard in manifest["shards"]]
            if sum(counts) != int(manifest["num_entries"]) or not counts or min(counts) < 0:
                raise ValueError(f"shard entries add up to {sum(counts)}, num_entries is {manifest['num_entries']}")
        except (KeyError, TypeError, ValueError) as exc:
            raise _manifest_error(root, exc) from None
        columns = {
            "mean": ("F16", self.shape),
            "std": ("F16", self.shape),
            "label": ("I64", ()),
            "flip": ("U8", ()),
            "index": ("I64", ()),
        }
        with self._shard_errors():
            self._shards = ShardReader(files, counts, columns)
            self.label = self._shards.column("label")
            self.flip = self._shards.column("flip")
            self.index = self._shards.column("index")
        self.num_entries = self._shards.num_rows

    @contextmanager
    def _shard_errors(self) -> Iterator[None]:
        """Turn a missing or damaged shard into a one-line UserError."""
        try:
            yield
        except ShardError as exc:
            raise UserError(
                f"latent cache {str(self.cache_dir)!r}: shard {exc.file} is missing or damaged "
                f"({exc.reason}); encode again"
            ) from None

    def posterior(self, entries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float16 ``mean`` and ``std`` of ``entries`` (int64 global entry numbers), read from the shards."""
        with self._shard_errors():
            return self._shards.rows("mean", entries), self._shards.rows("std", entries)

    def indices(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """Entries of the batch of ``step``."""
        return epoch_indices(self.num_entries, step, batch_size, seed)

    def _noise(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        return torch.randn(batch_size, *self.shape, generator=seeding.generator(seed, seeding.STREAMS["data"], step, 1))

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.indices(step, batch_size, seed)
        eps = self._noise(step, batch_size, seed)
        mean, std = self.posterior(idx)
        return mean.float() + std.float() * eps, self.label[idx]

    def batch_rows(
        self, step: int, batch_size: int, seed: int, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``rows`` of the global batch of ``step``, the same as in :meth:`batch` (only those entries are read)."""
        idx = self.indices(step, batch_size, seed)[rows]
        eps = self._noise(step, batch_size, seed)[rows]
        mean, std = self.posterior(idx)
        return mean.float() + std.float() * eps, self.label[idx]

    def reference(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` posterior means, unmirrored entries first (``seed`` is unused)."""
        order = torch.argsort(self.flip, stable=True)[:n]
        return self.posterior(order)[0].float(), self.label[order]

    def autoencoder(self, device: torch.device | str = "cpu") -> Autoencoder:
        """The autoencoder that made this cache, to decode samples back to images."""
        ae = build_autoencoder(self.autoencoder_spec, device=device)
        if abs(float(ae.scaling_factor) - self.scaling_factor) > 1e-9:
            raise UserError(
                f"VAE {self.autoencoder_spec!r} now has scaling factor {ae.scaling_factor}, the cache used {self.scaling_factor}"
            )
        return ae

    def close(self) -> None:
        """Close the shard files (reopened if batches are read again)."""
        if hasattr(self, "_shards"):
            self._shards.close()
