"""Soak test of the commands besides ``train``: ``kill -9`` ``shortcut encode``, ``shortcut eval``,
``shortcut study --quick`` and ``shortcut sample`` at random moments, start them again, and check that the
last start ends with the outputs of a run that was never interrupted.

For each command a reference run goes uninterrupted first (its time from taking the ``--out`` lock to
its end sets the kill window, shortened to the time of a trial's first start that ran to its end
unkilled: the machine may have been busier during the reference). Then trials: each starts the same command in a fresh ``--out``, kills it
with SIGKILL at a moment drawn uniformly over that window after it takes the lock, up to ``--kills``
times, then lets the last start run to its end; trials go on until ``--target`` kills were made. After
every kill, every file left in ``--out`` (temporary files of the killed write aside) must open with its
reader. ``--aim`` (a share of the kills) waits instead for one of the process's first file writes, drawn
uniformly, to begin (its temporary file ``.NAME.PID.tmp`` to appear) and kills it inside that write: for
``encode-shards`` (``encode`` with shards of 3 MB, whose writes last milliseconds) a shard write, for
``sample`` its one write, the short window between the last batch and the rename (``sample`` takes no
lock: its kills are always aimed). A trial passes
when every start exits 0 or was killed and the outputs equal the reference's:

- encode: every file of the cache byte for byte (shards, manifest, file list);
- eval: metrics.json and metrics.csv without the ``seconds`` column, the plot and the saved samples byte
  for byte;
- study: every checkpoint's tensors and the evaluation of every method (OUT/eval/*.json without the
  ``seconds`` fields); timing and report figures measure this machine's speed and are not compared;
- sample: the arrays of the ``.npz`` (samples and labels; the zip's timestamps aside).

Paths inside the files (a row's checkpoint, its samples file) are compared relative to ``--out``.

Finally no temporary file may be left.

    python benchmarks/soak_outputs.py --target 30 --seed 1            # the three commands, one line a trial
    python benchmarks/soak_outputs.py --command study --target 5 --json out.json
    python benchmarks/soak_outputs.py --command sample --command encode-shards --target 20 --aim 1 --seed 1
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
RUN = ["model=DiT-Nano", "batch_size=16", "steps=4", "log_every=2", "warmup_steps=0", "logger=none", "eval_every=0"]


def environment() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def shortcut(*argv: str) -> list[str]:
    return [sys.executable, "-m", "shortcut_models", *argv]


# ------------------------------------------------------------------------------------ reading outputs


def temporary(path: Path) -> bool:
    """A file or directory of a write under way or cut short by a kill (ours, a checkpoint's, or the
    ``.tmpXXXXXX`` of a library writing through a temporary file of its own)."""
    return any(part.endswith(".tmp") or part.startswith((".tmp", ".old-", ".del-")) for part in path.parts)


def unreadable(out: Path) -> list[str]:
    """Files in ``out`` that their readers refuse (temporary files aside)."""
    from PIL import Image
    from safetensors.torch import load_file

    bad = []
    for path in sorted(p for p in out.rglob("*") if p.is_file() and not temporary(p.relative_to(out))):
        try:
            if path.suffix == ".npz":
                with np.load(path) as data:
                    [data[k] for k in data.files]
            elif path.suffix == ".png":
                with Image.open(path) as image:
                    image.load()
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".safetensors":
                load_file(str(path))
            elif path.suffix in (".md", ".txt", ".csv"):
                path.read_text()
        except Exception as exc:  # noqa: BLE001 - any refusal counts
            bad.append(f"{path.relative_to(out)}: {type(exc).__name__}: {str(exc)[:80]}")
    return bad


def left_temporary(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if temporary(p.relative_to(out)))


def without_seconds(value):
    """``value`` (parsed JSON) with every ``seconds`` field removed."""
    if isinstance(value, dict):
        return {k: without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_seconds(v) for v in value]
    return value


def read_relative(path: Path, out: Path) -> str:
    """The text of ``path`` with ``out`` written as OUT (rows name their checkpoints and saved samples)."""
    return path.read_text().replace(str(out), "OUT")


def csv_without_seconds(path: Path, out: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(read_relative(path, out))))
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def same_files(ref: Path, out: Path, names: list[str]) -> list[str]:
    return [f"{name} differs" for name in names if (ref / name).read_bytes() != (out / name).read_bytes()]


def compare_encode(ref: Path, out: Path) -> list[str]:
    names = sorted(str(p.relative_to(ref)) for p in ref.rglob("*") if p.is_file() and p.name != ".lock")
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != ".lock")
    if got != names:
        return [f"files differ: {sorted(set(got) ^ set(names))}"]
    return same_files(ref, out, names)


def compare_eval(ref: Path, out: Path) -> list[str]:
    problems = []
    if without_seconds(json.loads(read_relative(ref / "metrics.json", ref))) != without_seconds(
        json.loads(read_relative(out / "metrics.json", out))
    ):
        problems.append("metrics.json differs")
    if csv_without_seconds(ref / "metrics.csv", ref) != csv_without_seconds(out / "metrics.csv", out):
        problems.append("metrics.csv differs")
    samples = sorted(str(p.relative_to(ref)) for p in (ref / "samples").glob("*.npz"))
    got = sorted(str(p.relative_to(out)) for p in (out / "samples").glob("*.npz"))
    if got != samples:
        problems.append(f"saved samples differ: {got}")
    return problems + same_files(ref, out, ["metric_vs_steps.png", *[s for s in samples if s in got]])


def compare_study(ref: Path, out: Path) -> list[str]:
    from safetensors.torch import load_file

    problems = []
    weights = sorted(str(p.relative_to(ref)) for p in ref.glob("*/checkpoints/*/*.safetensors"))
    got = sorted(str(p.relative_to(out)) for p in out.glob("*/checkpoints/*/*.safetensors"))
    if got != weights:
        return [f"checkpoints differ: {sorted(set(got) ^ set(weights))}"]
    for name in weights:
        a, b = load_file(str(ref / name)), load_file(str(out / name))
        if a.keys() != b.keys() or any(not (a[k] == b[k]).all() for k in a):
            problems.append(f"{name} differs")
    evals = sorted(str(p.relative_to(ref)) for p in (ref / "eval").glob("*.json"))
    if sorted(str(p.relative_to(out)) for p in (out / "eval").glob("*.json")) != evals:
        return [*problems, "eval/*.json: not the same files"]
    for name in evals:
        if without_seconds(json.loads(read_relative(ref / name, ref))) != without_seconds(
            json.loads(read_relative(out / name, out))
        ):
            problems.append(f"{name} differs")
    if not (out / "report.md").is_file():
        problems.append("no report.md")
    return problems


def compare_sample(ref: Path, out: Path) -> list[str]:
    if not (out / SAMPLES).is_file():
        return [f"no {SAMPLES}"]
    with np.load(ref / SAMPLES) as a, np.load(out / SAMPLES) as b:
        if a.files != b.files or any(not np.array_equal(a[k], b[k]) for k in a.files):
            return [f"{SAMPLES} differs"]
    return []


# ------------------------------------------------------------------------------------------ the jobs

SAMPLES = "s.npz"  # sample's output file in its --out directory


@dataclass
class Job:
    name: str
    argv: Callable[[Path], list[str]]  # the command for an --out
    compare: Callable[[Path, Path], list[str]]
    locks: bool = True  # holds --out's lock while it works (sample writes one file and takes none)
    writes: int = 1  # aimed kills land in one of its first ``writes`` file writes, drawn uniformly


def prepare(work: Path) -> dict[str, Job]:
    """Inputs of the three commands (an image folder, a tiny trained digits run) and their jobs."""
    from PIL import Image

    images, run = work / "images", work / "run"
    rng = np.random.default_rng(0)
    for i in range(512):
        path = images / f"c{i % 2}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(path)
    subprocess.run(shortcut("train", "--out", str(run), "--quiet", *RUN), env=environment(), check=True)
    encode = ["encode", "--data", str(images), "--vae", "identity", "--resolution", "32", "--shard-size", "8"]
    # shards of 3 MB (64 images at 64x64): each write lasts milliseconds, long enough to aim kills inside
    encode_shards = ["encode", "--data", str(images), "--vae", "identity", "--resolution", "64", "--shard-size", "64"]
    evaluate = ["eval", "--ckpt", str(run), "--steps", "1,2,4,8,16", "--num", "1024", "--batch-size", "128"]
    return {
        "encode": Job("encode", lambda out: shortcut(*encode, "--quiet", "--out", str(out)), compare_encode),
        "eval": Job(
            "eval", lambda out: shortcut(*evaluate, "--save-samples", "--quiet", "--out", str(out)), compare_eval
        ),
        "study": Job("study", lambda out: shortcut("study", "--quick", "--quiet", "--out", str(out)), compare_study),
        "encode-shards": Job(
            "encode-shards",
            lambda out: shortcut(*encode_shards, "--quiet", "--out", str(out)),
            compare_encode,
            writes=10,  # the file list, the manifest, 8 shards
        ),
        "sample": Job(
            "sample",
            lambda out: shortcut(
                "sample", "--ckpt", str(run), "--steps", "1", "--num", "60000", "--out", str(out / SAMPLES)
            ),
            compare_sample,
            locks=False,
        ),
    }


def wait_for_lock(out: Path, proc: subprocess.Popen, timeout: float = 300.0) -> bool:
    """Wait until the process holds ``out``'s lock (its work begins); False if it ended first."""
    lock, end = out / ".lock", time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            if str(proc.pid) in lock.read_text():
                return True
        except OSError:
            pass
        time.sleep(0.005)
    return False


def wait_for_temporary(out: Path, proc: subprocess.Popen, skip: int = 0, timeout: float = 300.0) -> bool:
    """Return as soon as the ``skip + 1``-th file write of ``proc`` is under way in ``out`` (its
    ``.NAME.PID.tmp`` exists; polled every 0.2 ms: a write lasts milliseconds); False if the process ended
    first."""
    suffix, end, seen = f".{proc.pid}.tmp", time.monotonic() + timeout, set()
    while time.monotonic() < end and proc.poll() is None:
        try:
            with os.scandir(out) as entries:
                seen.update(e.name for e in entries if e.name.endswith(suffix))
        except OSError:
            pass
        if len(seen) > skip:
            return True
        time.sleep(0.0002)
    return False


def started(job: Job, out: Path, proc: subprocess.Popen) -> bool:
    """Wait until the job works on ``out`` (holds its lock; a job that takes none: at once)."""
    return wait_for_lock(out, proc) if job.locks else proc.poll() is None


def reference(job: Job, out: Path) -> float:
    """Run ``job`` uninterrupted into ``out``; returns its seconds from taking the lock (or from its start) to its end."""
    proc = subprocess.Popen(job.argv(out), env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started(job, out, proc)
    t0 = time.monotonic()
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"the reference {job.name} failed: {err.decode()[-500:]}")
    return time.monotonic() - t0


def trial(job: Job, ref: Path, out: Path, window: float, kills: int, aim: float, rng: random.Random) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    result = {"kills": 0, "aimed": 0, "starts": 0, "temporary_after_kill": 0, "full_run": None, "problems": []}
    for attempt in range(kills + 1):
        proc = subprocess.Popen(job.argv(out), env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        result["starts"] += 1
        last, locked = attempt == kills, None
        if not last and started(job, out, proc):
            locked = time.monotonic()
            if not job.locks or rng.random() < aim:  # inside a write: the first to the job's writes-th one
                if wait_for_temporary(out, proc, skip=rng.randrange(job.writes)):
                    result["aimed"] += 1
            else:
                time.sleep(rng.uniform(0.0, window))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                result["kills"] += 1
        _, err = proc.communicate()
        if proc.returncode not in (0, -signal.SIGKILL):
            result["problems"].append(f"start {attempt + 1} exited {proc.returncode}: {err.decode().strip()[-300:]}")
            return result
        if proc.returncode == -signal.SIGKILL:
            result["temporary_after_kill"] += int(bool(left_temporary(out)))
            result["problems"] += [f"after kill {result['kills']}: unreadable {name}" for name in unreadable(out)]
        if proc.returncode == 0:
            if attempt == 0 and locked is not None:  # an uninterrupted run from an empty --out: its working time
                result["full_run"] = time.monotonic() - locked
            break  # finished (before a kill, or the last start)
    result["problems"] += job.compare(ref, out)
    result["problems"] += [f"temporary file left: {name}" for name in left_temporary(out)]
    return result


def soak(job: Job, work: Path, target: int, kills: int, aim: float, rng: random.Random) -> dict:
    ref = work / f"{job.name}-reference"
    t0 = time.monotonic()
    window = reference(job, ref)
    print(f"{job.name}: reference run {time.monotonic() - t0:.1f} s, {window:.1f} s holding the lock", flush=True)
    results = []
    while sum(r["kills"] for r in results) < target:
        r = trial(job, ref, work / f"{job.name}-trial", window, kills, aim, rng)
        results.append(r)
        if r["full_run"] is not None:  # the reference ran on a busier machine: kills aimed past the end
            window = min(window, r["full_run"])
        status = "ok" if not r["problems"] else "FAIL " + "; ".join(r["problems"])
        print(
            f"{job.name} trial {len(results)}: {r['kills']} kill(s) ({r['aimed']} aimed inside a write, "
            f"{r['temporary_after_kill']} left a temporary file), {r['starts']} start(s): {status}",
            flush=True,
        )
    return {
        "command": job.name,
        "trials": len(results),
        "kills": sum(r["kills"] for r in results),
        "kills_aimed_inside_a_write": sum(r["aimed"] for r in results),
        "starts": sum(r["starts"] for r in results),
        "kills_leaving_a_temporary_file": sum(r["temporary_after_kill"] for r in results),
        "equal_to_reference": sum(not r["problems"] for r in results),
        "failed": sum(bool(r["problems"]) for r in results),
        "seconds": round(time.monotonic() - t0, 1),
        "trial_results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--command",
        choices=["encode", "encode-shards", "eval", "study", "sample"],
        action="append",
        help="default: all five",
    )
    parser.add_argument("--target", type=int, default=30, help="kills per command, at least")
    parser.add_argument("--kills", type=int, default=3, help="kills per trial at most")
    parser.add_argument("--aim", type=float, default=0.0, help="share of kills aimed inside a file write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the totals and every trial's result here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    totals = []
    with tempfile.TemporaryDirectory(prefix="soak-outputs-") as tmp:
        jobs = prepare(Path(tmp))
        for name in args.command or ["encode", "encode-shards", "eval", "study", "sample"]:
            totals.append(soak(jobs[name], Path(tmp), args.target, args.kills, args.aim, rng))
            print(json.dumps({k: v for k, v in totals[-1].items() if k != "trial_results"}), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(totals, indent=2) + "\n")
    sys.exit(1 if any(t["failed"] for t in totals) else 0)


if __name__ == "__main__":
    main()
