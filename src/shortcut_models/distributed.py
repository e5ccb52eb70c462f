"""Several processes under ``torchrun``: process group, rank helpers, collectives, batch split.

``torchrun`` starts one process per GPU (or per CPU worker) and sets RANK, WORLD_SIZE and
LOCAL_RANK; :func:`init` then joins the process group, with NCCL when this process computes on
CUDA (device ``cuda:LOCAL_RANK``; ``cuda:0`` when a scheduler shows each process a single GPU) and
gloo otherwise. A plain ``shortcut`` command sets none of
these variables and stays a single process: every helper here is then the identity (rank 0 of 1,
sums of one, barriers that return at once), so callers need no special case.

Flags that decide control flow (stop on a signal, the NaN guard) are reduced over a gloo group on
the CPU, so checking them every step costs one small CPU message and never waits for the GPU.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

from .errors import UserError

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_control: object | None = None  # gloo group for CPU flags (None: use the default group)


def launched() -> bool:
    """True when started by torchrun (or anything that sets RANK, WORLD_SIZE and LOCAL_RANK)."""
    return all(k in os.environ for k in _ENV)


def env_world_size() -> int:
    """The number of processes torchrun announces (1 when not launched by torchrun)."""
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if is_active() else 0


def cuda_index() -> int:
    """This process's GPU: LOCAL_RANK, or 0 where a scheduler shows each process one GPU only."""
    count = torch.cuda.device_count()
    rank_here = int(os.environ.get("LOCAL_RANK", "0"))
    return rank_here if rank_here < count or count == 0 else rank_here % count


def is_main() -> bool:
    """Rank 0: the process that writes logs, checkpoints, samples and results."""
    return rank() == 0


def wants_cuda(device: str) -> bool:
    """Whether a ``device`` setting ('auto', 'cpu', 'cuda', 'cuda:1', ...) means computing on CUDA."""
    if device == "auto":
        return torch.cuda.is_available()
    try:
        return torch.device(device).type == "cuda"
    except RuntimeError:
        return False  # a bad name is reported by resolve_device


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else is passed to torch.device.

    Under torchrun, 'auto' and 'cuda' mean ``cuda:LOCAL_RANK`` (one GPU per process).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"bad device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type == "cuda" and device.index is None and is_active():
        device = torch.device("cuda", cuda_index())
    return device


def init(device: str = "auto") -> bool:
    """Join the process group torchrun describes; returns True when this call created it.

    Nothing happens outside torchrun or when a group exists already (a caller that set one up
    keeps it). On CUDA each process takes ``cuda:LOCAL_RANK`` and the backend is NCCL; else gloo.
    """
    global _control
    if not launched() or is_active():
        return False
    if wants_cuda(device):
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} requested but CUDA is not available")
        gpu = torch.device("cuda", cuda_index())
        torch.cuda.set_device(gpu)
        dist.init_process_group("nccl", device_id=gpu)
        _control = dist.new_group(backend="gloo")
    else:
        dist.init_process_group("gloo")
        _control = None
    return True


def cleanup(synchronize: bool = True) -> None:
    """Leave the process group (no-op when there is none).

    With ``synchronize`` (a command that ended normally) every process first meets the others at a
    barrier. PyTorch's gloo worker threads let go of a finished collective's tensors just after the
    caller resumes, and that needs the interpreter lock; once a DistributedDataParallel wrapper was
    built, the group outlives ``destroy_process_group`` and its threads run until the process
    exits, so a late release that falls into interpreter shutdown aborts the process ("terminate
    called without an active exception", about 1 run in 8 of tests/distributed/distributed_driver.py on 2
    cores). The barrier's wait (which releases the lock) and a full garbage collection give those
    threads the time to finish while Python is alive. After an error the barrier is skipped: the
    other processes may never reach it.
    """
    global _control
    if is_active():
        if synchronize and world_size() > 1:
            with contextlib.suppress(RuntimeError):  # a process that failed left: nothing to wait for
                dist.barrier()
        gc.collect()
        dist.destroy_process_group()
    _control = None


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[None]:
    """``init`` on entry and, when this call created the group, ``cleanup`` on exit."""
    created = init(device)
    try:
        yield
    except BaseException:
        if created:
            cleanup(synchronize=False)
        raise
    if created:
        cleanup()


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if is_active() and world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. to fill a download or cache), then the others."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """The elementwise sum (or 'max' / 'min') of ``tensor`` over processes, as a new tensor on its device."""
    if not is_active() or world_size() == 1:
        return tensor.clone()
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    buf = tensor.detach().to(_comm_device(), copy=True).contiguous()
    dist.all_reduce(buf, op=ops[op])
    return buf.to(tensor.device)


def max_int(value: int) -> int:
    """The largest ``value`` over processes, through the CPU control group (no GPU sync)."""
    if not is_active() or world_size() == 1:
        return int(value)
    buf = torch.tensor([int(value)], dtype=torch.int64)
    dist.all_reduce(buf, op=dist.ReduceOp.MAX, group=_control)
    return int(buf.item())


def any_true(flag: bool) -> bool:
    """True on every process when ``flag`` is True on any process."""
    return max_int(int(bool(flag))) > 0


def gather_interleaved(x: torch.Tensor, everyone: bool = False) -> torch.Tensor | None:
    """Merge equal-sized row blocks of every process, process k's row i becoming row i * W + k.

    Returns the merged rows (on ``x``'s device) on rank 0, or on every process with ``everyone``;
    None on the other processes. Every process must pass the same shape.
    """
    if not is_active() or world_size() == 1:
        return x
    world = world_size()
    buf = x.detach().to(_comm_device()).contiguous()
    if everyone:
        parts = [torch.empty_like(buf) for _ in range(world)]
        dist.all_gather(parts, buf)
    else:
        parts = [torch.empty_like(buf) for _ in range(world)] if is_main() else None
        dist.gather(buf, parts, dst=0)
        if parts is None:
            return None
    return torch.stack(parts, dim=1).flatten(0, 1).to(x.device)


def split_batch(batch_size: int, world: int, grad_accum: int = 1, batch_per_gpu: int = 0) -> tuple[int, int]:
    """(rows per process, micro-batches per step) for a global ``batch_size`` over ``world`` processes.

    ``batch_per_gpu`` > 0 fixes the micro-batch of each process and sets the accumulation to
    ``batch_size / (world * batch_per_gpu)``; 0 keeps ``grad_accum`` micro-batches.
    """
    if batch_size % world:
        raise UserError(f"batch_size {batch_size} (the global batch) is not divisible by the {world} processes")
    per_rank = batch_size // world
    if batch_per_gpu:
        if per_rank % batch_per_gpu:
            raise UserError(
                f"batch_size {batch_size} over {world} process(es) gives {per_rank} rows each, not divisible by "
                f"batch_per_gpu {batch_per_gpu}"
            )
        accum = per_rank // batch_per_gpu
        if grad_accum not in (1, accum):
            raise UserError(
                f"grad_accum {grad_accum} contradicts batch_per_gpu {batch_per_gpu} ({accum} micro-batches); set one"
            )
        return per_rank, accum
    if per_rank % grad_accum:
        raise UserError(f"batch_size {batch_size} is not divisible by world_size * grad_accum = {world} * {grad_accum}")
    return per_rank, grad_accum


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model``: gradients are averaged over processes in backward.

    Buffers are not re-broadcast at each forward (the networks' buffers are fixed tables), so a
    forward pass is never a collective.
    """
    ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    newer = "forward_sync_buffers" in inspect.signature(ddp).parameters  # newer torch renamed the switch
    no_sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
    return ddp(model, device_ids=ids, **no_sync)
