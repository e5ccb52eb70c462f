"""Soak test of crash recovery: ``kill -9`` a training run at random moments, resume it, and check that
it ends bit-identical to a run that was never interrupted.

Each trial trains a tiny run (a checkpoint every step, so most of the training time is spent writing
checkpoints) in a fresh directory with ``shortcut train``: up to ``--kills`` times the process is
killed with SIGKILL at a moment drawn uniformly over its training time (measured from when it holds
the run's lock) or, for a share ``--aim`` of the kills, at the first checkpoint write after that moment
(as soon as a partial directory appears), and the same command is started again; the last start runs
to the end. A trial
passes when every start exits 0 or was killed, the final checkpoint's weights, EMA weights and
optimizer state equal those of the uninterrupted reference bit for bit, metrics.csv holds each
logged step once and equals the reference's row by row (``samples_per_sec``, a measure of the
machine, aside), and no partial checkpoint directory is left.

    python benchmarks/soak_kill.py --trials 100            # prints one line per trial, then the totals
    python benchmarks/soak_kill.py --trials 3 --json out.json

Kills that land before the first checkpoint or after the last are counted too (they test the same
recovery); ``resumes`` counts the starts that found a checkpoint to continue from, and
``kills_inside_a_checkpoint_write`` the kills that left a partial checkpoint directory behind.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

STEPS = 60
CONFIG = [
    "--preset",
    "checkerboard",
    "model_args.width=32",
    "model_args.depth=1",
    "batch_size=32",
    f"steps={STEPS}",
    "ckpt_every=1",
    "keep_checkpoints=2",
    "log_every=4",
    "eval_every=0",
    "sample_steps=[1]",
    "logger=none",
]
PARTIAL = (".tmp-", ".old-", ".del-")
MACHINE_COLUMNS = ("samples_per_sec", "max_memory_gb")


def command(run: Path) -> list[str]:
    return [sys.executable, "-m", "shortcut_models", "train", "--out", str(run), "--quiet", *CONFIG]


def environment() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def final_state(run: Path) -> dict[str, torch.Tensor]:
    """The tensors of a run's final checkpoint: weights, EMA weights, optimizer moments and counters."""
    last = sorted((run / "checkpoints").glob("step_*"))[-1]
    out = {f"model.{k}": v for k, v in load_file(str(last / "model.safetensors")).items()}
    out.update({f"ema.{k}": v for k, v in load_file(str(last / "ema.safetensors")).items()})
    state = torch.load(last / "state.pt", map_location="cpu", weights_only=True)
    for i, st in state["optimizer"]["state"].items():
        out.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
    out["step"] = torch.tensor(state["step"])
    return out


def log_rows(run: Path) -> list[dict[str, str]]:
    """metrics.csv without the columns that measure the machine (throughput, memory)."""
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k not in MACHINE_COLUMNS} for r in csv.DictReader(fh)]


def wait_for_lock(run: Path, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Wait until the process holds the run's lock (training is about to start); False if it ended."""
    lock, end = run / ".lock", time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if lock.exists() and str(proc.pid) in lock.read_text():
            return True
        time.sleep(0.005)
    return False


def wait_for_partial(run: Path, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Return as soon as a partial checkpoint directory exists (a write or a deletion is under way)."""
    root, end = run / "checkpoints", time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        with os.scandir(root) if root.is_dir() else contextlib.nullcontext([]) as entries:
            if any(e.name.startswith(PARTIAL) for e in entries):
                return


def trial(
    work: Path,
    reference: dict[str, torch.Tensor],
    reference_rows: list[dict[str, str]],
    train_seconds: float,
    kills: int,
    aim: float,
    rng: random.Random,
) -> dict:
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    result = {"kills": 0, "starts": 0, "resumes": 0, "partial_left": 0, "identical": False, "same_logs": False}
    result["problems"] = []
    env = environment()
    for attempt in range(kills + 1):
        found = [p.name for p in (run / "checkpoints").iterdir()] if (run / "checkpoints").is_dir() else []
        resuming = any(name.startswith("step_") for name in found)
        result["partial_left"] += int(any(name.startswith(PARTIAL) for name in found))  # killed inside a write
        proc = subprocess.Popen(command(run), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        result["starts"] += 1
        result["resumes"] += int(resuming)
        last = attempt == kills
        if not last and wait_for_lock(run, proc):
            time.sleep(rng.uniform(0.0, train_seconds))
            if rng.random() < aim:  # wait for the next checkpoint write and kill inside it
                wait_for_partial(run, proc)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                result["kills"] += 1
        out, err = proc.communicate()
        if proc.returncode not in (0, -signal.SIGKILL):
            result["problems"].append(f"start {attempt + 1} exited {proc.returncode}: {err.strip()[-300:]}")
        if proc.returncode == 0 and not last:
            break  # finished before the kill: the trial is complete
    got = final_state(run)
    result["identical"] = got.keys() == reference.keys() and all(torch.equal(got[k], reference[k]) for k in got)
    if not result["identical"]:
        result["problems"].append("final state differs from the uninterrupted run")
    left = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(PARTIAL)]
    if left:
        result["problems"].append(f"partial directories left: {left}")
    steps = [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    if len(steps) != len(set(steps)):
        result["problems"].append(f"metrics.csv repeats steps: {steps}")
    rows = log_rows(run)
    result["same_logs"] = rows == reference_rows
    if not result["same_logs"]:
        differ = [a["step"] for a, b in zip(reference_rows, rows) if a != b]
        result["problems"].append(f"metrics.csv differs from the uninterrupted run's (rows of steps {differ})")
    return result


def summary(results: list[dict]) -> dict[str, int]:
    return {
        "trials": len(results),
        "kills": sum(r["kills"] for r in results),
        "starts": sum(r["starts"] for r in results),
        "resumes": sum(r["resumes"] for r in results),
        "kills_inside_a_checkpoint_write": sum(r["partial_left"] for r in results),
        "bit_identical": sum(r["identical"] for r in results),
        "same_logs": sum(r["same_logs"] for r in results),
        "failed": sum(bool(r["problems"]) for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--kills", type=int, default=3, help="kills per trial at most")
    parser.add_argument("--aim", type=float, default=0.5, help="share of kills aimed inside a checkpoint write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the totals and every trial's result here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        ref_run = work / "reference"
        t0 = time.monotonic()
        proc = subprocess.Popen(command(ref_run), env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_lock(ref_run, proc)
        t_lock = time.monotonic()
        while proc.poll() is None and not (ref_run / "checkpoints" / f"step_{STEPS:08d}").exists():
            time.sleep(0.005)
        train_seconds = time.monotonic() - t_lock  # from taking the lock to the final checkpoint
        if proc.wait() != 0:
            sys.exit(f"the reference run failed: {proc.stderr.read().decode()[-500:]}")
        reference, reference_rows = final_state(ref_run), log_rows(ref_run)
        print(
            f"reference run: {time.monotonic() - t0:.1f} s, {train_seconds:.1f} s from taking the lock to the final checkpoint"
        )
        results: list[dict] = []
        totals = summary(results)
        for i in range(args.trials):
            r = trial(work, reference, reference_rows, train_seconds, args.kills, args.aim, rng)
            results.append(r)
            status = "ok" if r["identical"] and not r["problems"] else "FAIL " + "; ".join(r["problems"])
            print(
                f"trial {i + 1}: {r['kills']} kill(s), {r['partial_left']} inside a write, "
                f"{r['resumes']} resume(s): {status}",
                flush=True,
            )
            totals = summary(results)
            if args.json:  # after every trial, so that a soak stopped early keeps its figures
                Path(args.json).write_text(json.dumps({"totals": totals, "trials": results}, indent=2) + "\n")
    print(json.dumps(totals))
    sys.exit(1 if totals["failed"] else 0)


if __name__ == "__main__":
    main()
