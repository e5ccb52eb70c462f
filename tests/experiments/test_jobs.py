"""Jobs run after the jobs they depend on, inline or in worker processes, with the same results."""

import pytest

from shortcut_models.experiments.jobs import run_jobs

# job -> the jobs it needs; "x" is not among the jobs (counts as done)
NEEDS = {1: [], 2: [1], 3: [2, 1], 4: [], 5: [4, "x"]}


@pytest.mark.parametrize("workers", [1, 2])
def test_dependencies_come_first_and_results_are_kept(workers):
    order = []
    results = run_jobs(
        [5, 3, 2, 1, 4],
        key=lambda j: j,
        needs=lambda j: NEEDS[j],
        work=abs,  # a module-level function, so worker processes can run it
        workers=workers,
        on_done=lambda j, r: order.append(j),
    )
    assert results == {j: j for j in NEEDS}
    for job, needed in NEEDS.items():
        assert all(order.index(n) < order.index(job) for n in needed if n in NEEDS)


def test_a_circle_is_refused_and_a_failure_is_raised():
    with pytest.raises(ValueError, match="circle"):
        run_jobs([1, 2], key=lambda j: j, needs=lambda j: [3 - j], work=abs)
    with pytest.raises(TypeError):
        run_jobs(["a"], key=lambda j: j, needs=lambda j: [], work=abs)


# Run in a fresh interpreter, as `shortcut study` runs: the stop path depends on process-wide signal state,
# which the rest of the test suite (and its threads) must not decide. A hang fails the test at the timeout.
STOP_SCRIPT = """
import json, multiprocessing, os, signal, sys, threading, time
from shortcut_models.experiments.jobs import run_jobs

before, before_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
threading.Timer(float(sys.argv[1]), lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
t0 = time.perf_counter()
try:
    run_jobs([600.0, 601.0], key=lambda j: j, needs=lambda j: [], work=time.sleep, workers=2)
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "stopped"
print(json.dumps({
    "outcome": outcome,
    "seconds": time.perf_counter() - t0,
    "children": len(multiprocessing.active_children()),
    "handler_restored": signal.getsignal(signal.SIGTERM) is before and signal.getsignal(signal.SIGINT) is before_int,
}))
"""


@pytest.mark.parametrize("started_in_background", [False, True])
def test_a_stop_request_stops_sleeping_workers_and_leaves_none_behind(started_in_background):
    """SIGTERM while two workers sleep for ten minutes: the workers are interrupted (also when the process
    started with SIGINT ignored, as a shell's background job does), none is left, and SIGTERM's handling
    is restored."""
    import json
    import os
    import signal
    import subprocess
    import sys

    def ignore_sigint():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    child = subprocess.Popen(
        [sys.executable, "-c", STOP_SCRIPT, "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a hang is ended with its workers
        preexec_fn=ignore_sigint if started_in_background else None,
    )
    try:
        stdout, stderr = child.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail("the stop request did not end the jobs within 240 s (the child and its workers were killed)")
    assert child.returncode == 0, stderr[-2000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["outcome"] == "stopped"
    assert result["seconds"] < 200  # the ten-minute sleeps were interrupted, not waited for
    assert result["children"] == 0 and result["handler_restored"]
