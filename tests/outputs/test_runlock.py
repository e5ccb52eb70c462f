"""One writer per run directory: a second `shortcut train` on a locked run stops with one line naming
the holder, readers need no lock, and a lock left by a killed process is taken over."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shortcut_models import runlock
from shortcut_models.cli import main

TINY = ["model_args.width=16", "model_args.depth=1", "batch_size=16", "eval_every=0", "sample_steps=[1]", "logger=none"]
SRC = str(Path(runlock.__file__).parents[1])
HOLD = "import sys; from shortcut_models import runlock; lock = runlock.acquire(sys.argv[1]); print('held', flush=True); sys.stdin.read()"


def train(run, *extra) -> int:
    return main(["train", "--out", str(run), "--preset", "checkerboard", "--quiet", *TINY, *extra])


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_second_writer_is_refused_readers_are_not_and_a_killed_holders_lock_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, "steps=2") == 0
    capsys.readouterr()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC},
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert train(run, "steps=4") == 2
        err = one_line(capsys)
        assert f"{run} is in use by another training run (pid {holder.pid} on host {socket.gethostname()}" in err
        assert main(["sample", "--ckpt", str(run), "--steps", "1", "--num", "4", "--out", str(tmp_path / "s.npz")]) == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert train(run, "steps=4") == 0  # the killed holder's lock is taken over
    err = capsys.readouterr().err
    assert f"taking over the lock of {run} left by a run that ended without releasing it (pid {holder.pid}" in err
    assert (run / runlock.LOCK_FILE).read_text() == ""  # released cleanly at the end


def test_one_process_may_hold_several_handles(tmp_path):
    first = runlock.acquire(tmp_path)
    second = runlock.acquire(tmp_path)
    first.release()
    assert str(os.getpid()) in (tmp_path / runlock.LOCK_FILE).read_text()  # still held by the second
    second.release()
    second.release()  # idempotent
    assert (tmp_path / runlock.LOCK_FILE).read_text() == ""


@pytest.mark.slow  # two training processes
def test_two_concurrent_writers_one_runs_the_other_exits_2(tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "shortcut_models", "train", "--out", str(run), "--preset", "checkerboard"]
    argv += ["--quiet", *TINY, "steps=300", "ckpt_every=100", "log_every=50"]  # seconds: both start meanwhile
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)
    ]
    results = sorted((p.wait(), p.communicate()) for p in procs)
    (code_a, (out_a, _)), (code_b, (_, err_b)) = results
    assert (code_a, code_b) == (0, 2), results
    # the holder is named once it has written itself into the lock; a second writer arriving in between (on a
    # loaded machine) is refused all the same, saying so
    assert "checkpoint:" in out_a and "is in use by another training run (" in err_b
    assert "(pid " in err_b or "(holder not yet recorded)" in err_b
    assert len(err_b.strip().splitlines()) == 1
    steps = [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(50, 301, 50)]
