"""Run independent jobs in worker processes, each job after the jobs it depends on.

With one worker the jobs run in this process, in order. With several, each worker is a fresh process
(spawned, so nothing of this process's state is shared) that runs ``torch.set_num_threads(threads)``
first; a job starts as soon as a worker is free and every job it depends on has finished. Results are
the same either way: training on the CPU gives the same numbers with 1 or 2 threads here (tested for
the study's network), and each job writes its own files.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

import torch

J = TypeVar("J")


def _start_worker(threads: int) -> None:
    """A worker's set-up: its thread count, and Ctrl-C's usual meaning (a process started in the background
    by a shell inherits SIGINT ignored, and a stop request must still reach the job)."""
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_jobs(
    jobs: Sequence[J],
    key: Callable[[J], Hashable],
    needs: Callable[[J], Sequence[Hashable]],
    work: Callable[[J], Any],
    workers: int = 1,
    threads: int = 1,
    on_done: Callable[[J, Any], None] | None = None,
) -> dict[Hashable, Any]:
    """``work(job)`` for every job, after the jobs whose keys ``needs(job)`` names (keys not among the
    jobs count as done); returns {key: result}. ``work`` must be a module-level function when
    ``workers`` > 1. The first failure, Ctrl-C or SIGTERM sends SIGINT to the running jobs (a training run
    saves a checkpoint and stops), waits for them and is raised."""
    keys = {key(j) for j in jobs}
    pending = list(jobs)
    results: dict[Hashable, Any] = {}

    def ready(job: J) -> bool:
        return all(k in results or k not in keys for k in needs(job))

    if workers <= 1:
        while pending:
            job = next((j for j in pending if ready(j)), None)
            if job is None:
                raise ValueError("jobs depend on each other in a circle")
            pending.remove(job)
            results[key(job)] = work(job)
            if on_done is not None:
                on_done(job, results[key(job)])
        return results

    context = multiprocessing.get_context("spawn")
    running: dict[Future, J] = {}
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a stop request reaches the workers (below)
    # A process started in the background by a shell has SIGINT ignored, and its spawned workers inherit that
    # until their set-up runs: a stop request sent while a worker starts would be lost and the worker would go
    # on to its job. Caught here, SIGINT starts with its default action in the workers instead.
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(threads,)) as pool:
        try:
            while pending or running:
                for job in [j for j in pending if ready(j)][: workers - len(running)]:
                    pending.remove(job)
                    running[pool.submit(work, job)] = job
                if not running:
                    raise ValueError("jobs depend on each other in a circle")
                # a timeout, so a stop signal is acted on within a second even when another thread of this
                # process (e.g. a library's) received it
                done, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    job = running.pop(future)
                    results[key(job)] = future.result()
                    if on_done is not None:
                        on_done(job, results[key(job)])
        except BaseException:
            # Interrupted or failed: ask the running jobs to stop as a stop signal does (a training run saves a
            # checkpoint first), wait for them, and leave nothing running.
            for process in list(getattr(pool, "_processes", {}).values()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGINT)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
    return results


def _interrupt(signum, frame) -> None:  # noqa: ARG001
    raise KeyboardInterrupt
