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
from typing import Any, Generic, TypeVar

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
    queue = _Queue(jobs, key, needs, on_done or (lambda job, result: None))
    if workers <= 1:
        while queue.pending:
            job = next((j for j in queue.pending if queue.ready(j)), None)
            if job is None:
                raise ValueError("jobs depend on each other in a circle")
            queue.pending.remove(job)
            queue.done(job, work(job))
        return queue.results
    _run_in_workers(queue, work, workers, threads)
    return queue.results


class _Queue(Generic[J]):
    """The jobs not started yet, the results so far, and when a job may start."""

    def __init__(self, jobs: Sequence[J], key, needs, on_done) -> None:
        self.key, self.needs, self.on_done = key, needs, on_done
        self.keys = {key(j) for j in jobs}
        self.pending = list(jobs)
        self.results: dict[Hashable, Any] = {}

    def ready(self, job: J) -> bool:
        return all(k in self.results or k not in self.keys for k in self.needs(job))

    def done(self, job: J, result: Any) -> None:
        self.results[self.key(job)] = result
        self.on_done(job, result)


def _run_in_workers(queue: _Queue, work: Callable[[Any], Any], workers: int, threads: int) -> None:
    """Run the queue's jobs in ``workers`` spawned processes, each job once the jobs it needs are done."""
    context = multiprocessing.get_context("spawn")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a stop request reaches the workers (below)
    # A process started in the background by a shell has SIGINT ignored, and its spawned workers inherit that
    # until their set-up runs: a stop request sent while a worker starts would be lost and the worker would go
    # on to its job. Caught here, SIGINT starts with its default action in the workers instead.
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(threads,)) as pool:
        try:
            _drain(queue, pool, work, workers)
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


def _drain(queue: _Queue, pool: ProcessPoolExecutor, work: Callable[[Any], Any], workers: int) -> None:
    """Submit each job once it is ready and a worker is free, until every job has finished."""
    running: dict[Future, Any] = {}
    while queue.pending or running:
        for job in [j for j in queue.pending if queue.ready(j)][: workers - len(running)]:
            queue.pending.remove(job)
            running[pool.submit(work, job)] = job
        if not running:
            raise ValueError("jobs depend on each other in a circle")
        # a timeout, so a stop signal is acted on within a second even when another thread of this
        # process (e.g. a library's) received it
        done, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
        for future in done:
            queue.done(running.pop(future), future.result())


def _interrupt(signum, frame) -> None:  # noqa: ARG001
    raise KeyboardInterrupt
