"""Checkpoint directories: self-describing, written atomically, found again for automatic resume.

Layout of ``RUN/checkpoints/step_00001000/`` (that of a Hugging Face model repository)::

    config.json        what the network is and how to sample it (:class:`ModelSpec`), the step,
                       and the training config of the run ("training")
    model.safetensors  online network weights
    ema.safetensors    EMA weights (the teacher, and what sampling uses)
    state.pt           optimizer state, EMA counters, RNG states (resuming only; tensors and plain
                       values, loaded with ``weights_only=True``)

``config.json`` alone rebuilds the network and its sampler: no data set or latent cache is opened
to load a checkpoint. It names its format (``format_version``, :data:`FORMAT_VERSION`); a checkpoint
of another format (an older one: format 2, or format 1, which had no ``format_version``) is refused
by :func:`read_config`, which every reader goes through, with one line naming the release that
reads it (:class:`OtherFormat`).

A checkpoint is written under a temporary name (``.tmp-step_N-PID``) and renamed when complete, so a
crash leaves either the previous checkpoint or the new one, never a half-written ``step_N``; what a
crash leaves behind is tidied by :func:`recover_partial` when the next writer takes the run's lock.
Under torchrun only rank 0 writes; every rank reads the same checkpoint when a run resumes.

Nothing read here runs code: weights are safetensors, state.pt is loaded with ``weights_only=True``
and config.json is JSON. Every reader checks what it reads (:class:`DamagedCheckpoint` names the file
and what is wrong), so a damaged newest checkpoint can be passed over for an older intact one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import UserError, WriteFailed, first_line
from .outputs import cause, describe
from .version import __version__

CHECKPOINTS = "checkpoints"
PREFIX = "step_"
FORMAT_VERSION = 3  # since 0.2.0
# older formats -> the release that reads them (format 1: config.json held the training config alone)
READ_BY = {1: "0.1.0", 2: "0.1.0"}
CONFIG = "config.json"
ONLINE_WEIGHTS = "model.safetensors"
EMA_WEIGHTS = "ema.safetensors"
STATE = "state.pt"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# partial directories of a writer: being written, moved aside during a same-step re-save, being deleted
TMP, OLD, DELETED = ".tmp-", ".old-", ".del-"
DAMAGED = "damaged-"  # a damaged checkpoint set aside by a resuming run (kept, never loaded)
_MOVED_ASIDE = re.compile(rf"^{re.escape(OLD)}({PREFIX}\d+)-\d+$")
STATE_KEYS = ("step", "optimizer", "ema", "rng_cpu")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a trained network and sample it, without its data.

    network: ``{"class": "DiT" | "MLP", "args": {...}}`` (``shortcut_models.models.build_network``);
    sample_shape: one sample in the space the network works in (latents for latent data);
    num_classes: real classes (``num_classes`` is the null label; 0 = unconditional);
    objective, objective_args: the training objective and its knobs; sampling_d: the step size a
    sampler feeds the network (None: the step actually taken); autoencoder: the VAE (hub name or
    path) that decodes samples to images, None for pixels and vectors, with its scaling_factor;
    data_shape: one decoded sample; data: the name of the training data (e.g. "digits").
    """

    network: dict[str, Any]
    sample_shape: tuple[int, ...]
    num_classes: int
    objective: str
    objective_args: dict[str, Any]
    sampling_d: float | None
    data_shape: tuple[int, ...]
    data: str = ""
    autoencoder: str | None = None
    scaling_factor: float | None = None

    @property
    def max_steps(self) -> int:
        """M, the finest step count the network was trained for."""
        return int(self.objective_args.get("max_steps", 128))

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sample_shape"], out["data_shape"] = list(self.sample_shape), list(self.data_shape)
        return out

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> ModelSpec:
        """A spec from the entries of a config.json; ValueError naming what is missing or malformed."""
        names = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [k for k in required if k not in values]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        spec = {k: values[k] for k in names if k in values}
        try:
            spec["sample_shape"] = tuple(int(s) for s in spec["sample_shape"])
            spec["data_shape"] = tuple(int(s) for s in spec["data_shape"])
            spec["num_classes"] = int(spec["num_classes"])
        except (TypeError, ValueError):
            raise ValueError("sample_shape, data_shape and num_classes must be integers") from None
        if not isinstance(spec["network"], dict) or not isinstance(spec["objective_args"], dict):
            raise ValueError("network and objective_args must be JSON objects")
        autoencoder = spec.get("autoencoder")
        if autoencoder is not None and not isinstance(autoencoder, str):
            raise ValueError("autoencoder must be a VAE's name or path, or null")
        if autoencoder and autoencoder.strip() != "identity" and len(spec["sample_shape"]) != 3:
            # refused from the file: no VAE is looked for (on the disk or the hub) for data it cannot decode
            raise ValueError(
                f"autoencoder {autoencoder!r} with samples of shape {list(spec['sample_shape'])}: a VAE decodes "
                "image latents [C, H, W]; vector data has no autoencoder (null)"
            )
        return cls(**spec)


def checkpoint_config(spec: ModelSpec, step: int, training: dict[str, Any]) -> dict[str, Any]:
    """The config.json of a checkpoint: the spec, the step and the run's training config."""
    return {"format_version": FORMAT_VERSION, **spec.to_json(), "step": int(step), "training": training}


def training_config(config: dict[str, Any]) -> dict[str, Any]:
    """The training config stored in a checkpoint's config.json (read by :func:`read_config`)."""
    return config["training"]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile / DistributedDataParallel wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def is_checkpoint(path: Path) -> bool:
    """A directory a sampler can load: config.json and weights (EMA, or the online ones alone)."""
    path = Path(path)
    return (path / CONFIG).is_file() and ((path / EMA_WEIGHTS).is_file() or (path / ONLINE_WEIGHTS).is_file())


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoint directories (``step_N``) of a run, oldest first, damaged ones included (see
    :func:`read_checkpoint`)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if step_of(p) is not None and p.is_dir()]
    return sorted(found, key=lambda p: step_of(p))


def step_of(path: Path) -> int | None:
    """The step of a checkpoint directory named ``step_N`` (None for other names)."""
    digits = Path(path).name[len(PREFIX) :]
    return int(digits) if Path(path).name.startswith(PREFIX) and digits.isdigit() else None


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    """Where checkpoint ``step`` of a run lives (``RUN/checkpoints/step_00001000``)."""
    return Path(run_dir) / CHECKPOINTS / f"{PREFIX}{step:08d}"


def save_checkpoint(
    run_dir: Path,
    step: int,
    config: dict[str, Any],
    model: nn.Module,
    ema: nn.Module,
    state: dict[str, Any] | None,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically and delete all but the newest ``keep``; returns its path.

    ``state`` (optimizer, counters, RNG states) goes to state.pt; None writes weights only (a
    checkpoint to sample or start a new run from, not one to resume).

    Files are created with the permissions the umask gives (as any file the user creates). A failed
    write (a full disk, a file-size limit) removes the partial directory and raises
    :class:`~shortcut_models.errors.WriteFailed`; the checkpoints written before are untouched.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(run_dir, step)
    tmp = root / f"{TMP}{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        save_file(_tensors(model), str(tmp / ONLINE_WEIGHTS))
        save_file(_tensors(ema), str(tmp / EMA_WEIGHTS))
        if state is not None:
            with open(tmp / STATE, "wb") as fh:  # through a Python file: a full disk raises OSError (ENOSPC)
                torch.save({"step": step, **state}, fh)
        mode = 0o666 & ~_umask()
        for f in tmp.iterdir():
            os.chmod(f, mode)  # safetensors creates its files 0600; every file gets the mode the umask gives
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(exc, Exception):
            raise
        error = cause(exc)
        why = describe(error) if error is not None else first_line(exc)
        raise WriteFailed(f"cannot write checkpoint {final.name} in {root}: {why}") from exc
    if final.exists():  # re-saving the same step (e.g. a stop right after a periodic save)
        old = root / f"{OLD}{final.name}-{os.getpid()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    _fsync_dir(root)
    for old in list_checkpoints(run_dir)[:-keep]:
        gone = root / f"{DELETED}{old.name}-{os.getpid()}"
        old.rename(gone)  # a deletion cut short never leaves a half-deleted step_N directory
        shutil.rmtree(gone, ignore_errors=True)
    return final


def recover_partial(run_dir: Path) -> list[str]:
    """Tidy what crashed writers left in ``RUN/checkpoints`` (call it holding the run's lock).

    A checkpoint moved aside while the same step was being re-saved (``.old-step_N-PID``) goes back
    to ``step_N`` when no ``step_N`` exists; every other partial directory (``.tmp-``, ``.old-``,
    ``.del-``) is removed. Returns one note per restored checkpoint.
    """
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    notes = []
    for path in sorted(root.iterdir()):
        match = _MOVED_ASIDE.match(path.name)
        if match and path.is_dir() and not (root / match.group(1)).exists():
            path.rename(root / match.group(1))
            notes.append(f"restored checkpoint {root / match.group(1)} (left as {path.name} by a crash)")
    for path in root.iterdir():
        if path.name.startswith((TMP, OLD, DELETED)):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return notes


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint ``step_N`` to ``damaged-step_N`` (``-2``, ``-3``... when taken), so
    that it is kept for inspection but neither resumed from nor pruned; returns the new path."""
    path = Path(path)
    target = path.with_name(f"{DAMAGED}{path.name}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{DAMAGED}{path.name}-{n}")
    path.rename(target)
    return target


def checkpoint_candidates(path: str | Path) -> list[Path]:
    """The checkpoints ``path`` may mean, to be tried in order: a checkpoint directory itself (any name,
    e.g. a renamed ``best``), the checkpoints of a run directory newest first, or a model repository
    on the Hugging Face hub named ``owner/name`` (downloaded once to the hub's cache; needs the
    ``huggingface_hub`` package, which diffusers brings)."""
    path = Path(path)
    if is_checkpoint(path):
        return [path]
    found = list_checkpoints(path)
    if found:
        return found[::-1]
    if not path.exists() and HUB_ID.match(str(path)):
        return [_from_hub(str(path))]
    raise UserError(f"no checkpoint found at {path} (expected a run directory or a checkpoint directory)")


def resolve_checkpoint(path: str | Path) -> Path:
    """The first of :func:`checkpoint_candidates`: a checkpoint directory, the latest checkpoint of a
    run directory, or a hub repository."""
    return checkpoint_candidates(path)[0]


def _from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(
            f"no checkpoint at {repo_id!r}, and loading it from the Hugging Face hub needs the "
            "huggingface_hub package (pip install huggingface_hub)"
        ) from None
    try:
        local = Path(snapshot_download(repo_id, allow_patterns=[CONFIG, ONLINE_WEIGHTS, EMA_WEIGHTS]))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repository, no access: one line
        raise UserError(
            f"no checkpoint at {repo_id!r} locally, and the Hugging Face hub did not give one: {first_line(exc)}"
        ) from None
    if not is_checkpoint(local):
        raise UserError(f"hub repository {repo_id!r} holds no {CONFIG} with {EMA_WEIGHTS} or {ONLINE_WEIGHTS}")
    return local


class DamagedCheckpoint(UserError):
    """A checkpoint file that is missing, cut short, garbled or holds NaN/infinite weights (the message
    names the file and what is wrong)."""


class UnsafeCheckpoint(UserError):
    """A state.pt holding objects other than tensors and plain values: loading it could run code."""


class OtherFormat(UserError):
    """A checkpoint of another format than :data:`FORMAT_VERSION`, written by another release: not
    damaged, so never set aside; the message names the release that reads it."""


def read_config(ckpt: Path) -> dict[str, Any]:
    """The config.json of a checkpoint; DamagedCheckpoint when it is unreadable, not a JSON object or
    holds no training config, OtherFormat when it is of another format."""
    file = Path(ckpt) / CONFIG
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise DamagedCheckpoint(f"cannot read {file}: {first_line(exc)}") from None
    if not isinstance(config, dict):
        raise DamagedCheckpoint(f"{file} is not a checkpoint config (a JSON object)")
    check_format(config.get("format_version", 1), file)
    if not isinstance(config.get("training"), dict):
        raise DamagedCheckpoint(f"{file} holds no training config (a JSON object)")
    return config


def check_format(version: object, file: Path) -> None:
    """OtherFormat (one line naming the release that reads it) unless ``version``, the format of the
    checkpoint config ``file``, is :data:`FORMAT_VERSION`; DamagedCheckpoint when it is no format number."""
    if version == FORMAT_VERSION:
        return
    if type(version) is not int or version < 1:
        raise DamagedCheckpoint(f"{file} has format_version {version!r}, not a checkpoint format")
    this = f"this is {__version__} (format {FORMAT_VERSION})"
    if version > FORMAT_VERSION:
        raise OtherFormat(
            f"{file} is a checkpoint of format {version}, written by a newer shortcut-models; {this}: "
            "upgrade with `pip install -U shortcut-models`"
        )
    release = READ_BY[version]
    raise OtherFormat(
        f"{file} is a checkpoint of format {version}, written by shortcut-models {release.rsplit('.', 1)[0]}.x; "
        f"{this}: read it with shortcut-models {release}"
    )


def sampling_weights(ckpt: Path) -> Path:
    """The weights a sampler loads: the EMA network's, or the online network's where there are none."""
    ema = Path(ckpt) / EMA_WEIGHTS
    return ema if ema.is_file() else Path(ckpt) / ONLINE_WEIGHTS


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (no code runs: the format holds tensors only); DamagedCheckpoint
    when the file is missing, cut short or garbled, or holds NaN or infinite values."""
    file = Path(file)
    if not file.is_file():
        raise DamagedCheckpoint(f"{file} is missing")
    try:
        tensors = load_file(str(file))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type, OSError...
        raise DamagedCheckpoint(f"{file} is unreadable ({first_line(exc)})") from None
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise DamagedCheckpoint(f"{file} holds NaN or infinite values (in {bad[0]})")
    return tensors


def load_weights(module: nn.Module, file: Path) -> None:
    """Load a safetensors file into ``module`` (strict: names and shapes must match; see :func:`read_weights`)."""
    load_tensors(module, read_weights(file), file)


def load_tensors(module: nn.Module, tensors: dict[str, torch.Tensor], file: Path) -> None:
    """Load ``tensors`` (read from ``file``) into ``module``; DamagedCheckpoint when a name or shape differs."""
    check_fit(unwrap(module).state_dict(), tensors, file)
    unwrap(module).load_state_dict(tensors, strict=True)


def check_fit(
    own: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], file: Path, may_lack: set[str] = frozenset()
) -> None:
    """DamagedCheckpoint unless ``tensors`` (read from ``file``) has the names and shapes of the state
    dict ``own``, except the names in ``may_lack``, which may be absent."""
    missing, unexpected = set(own) - set(tensors) - set(may_lack), set(tensors) - set(own)
    if missing or unexpected:
        what = [f"missing {k!r}" for k in sorted(missing)[:1]] + [f"unexpected {k!r}" for k in sorted(unexpected)[:1]]
        raise DamagedCheckpoint(
            f"{file} does not fit the network ({len(missing)} missing, {len(unexpected)} unexpected keys; "
            f"first {', '.join(what)})"
        )
    for key, value in tensors.items():
        if value.shape != own[key].shape:
            raise DamagedCheckpoint(
                f"{file}: {key} has shape {tuple(value.shape)} there, {tuple(own[key].shape)} in the network"
            )


def load_state(ckpt: Path) -> dict[str, Any]:
    """The training state of a checkpoint, loaded with ``weights_only=True`` (tensors and plain values
    only: no code runs). UnsafeCheckpoint when the file holds anything else; DamagedCheckpoint when it
    is missing, cut short, garbled or lacks an entry. A checkpoint written without one (``state=None``,
    converted from the authors' code) is a UserError: it can start a new run (``--init-from``), not
    continue one."""
    file = Path(ckpt) / STATE
    if not file.is_file() and (Path(ckpt) / CONFIG).is_file() and "converted_from" in read_config(ckpt):
        raise UserError(
            f"{ckpt} holds converted weights and no training state to resume; start a new run from it with "
            f"--init-from {Path(ckpt).parent.parent} and another --out"
        )
    if not file.is_file():
        raise DamagedCheckpoint(f"{file} is missing")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise UnsafeCheckpoint(
                f"{file} holds objects other than tensors and plain values, which could run code when loaded; "
                "refusing to load it (remove that checkpoint if you did not write it)"
            ) from None
        raise DamagedCheckpoint(f"{file} is unreadable ({first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - a cut-short zip, an empty file...
        raise DamagedCheckpoint(f"{file} is unreadable ({first_line(exc)})") from None
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise DamagedCheckpoint(f"{file} lacks {missing[0]!r}")
    return state
