"""Every command's outputs are written whole or not at all.

Under a file-size limit (``ulimit -f``: RLIMIT_FSIZE, set in this process, no root needed) each command
prints one line naming the file and the cause and exits 1, and leaves only files that their readers
accept (an existing target untouched); a bad ``--out`` is refused before any work; a second writer on an
``--out`` in use exits 2 naming the holder; a ``--num`` the machine cannot hold is refused at once.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import pickle
import resource
from pathlib import Path

import numpy as np
import pytest
import torch

from shortcut_models import capacity, cli, outputs, runlock
from shortcut_models.convert import AuthorsArchitecture, authors_parameter_shapes, nest
from shortcut_models.errors import WriteFailed

LIMIT = 4096  # bytes: the small files (plans, configs, manifests) fit, every command's main output does not
TINY = ["--preset", "checkerboard", "steps=2", "model_args.width=16", "model_args.depth=1", "batch_size=16"]
TINY += ["log_every=1", "sample_steps=[1]", "logger=none", "eval_every=0"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, png, one_thread) -> dict[str, str]:
    """A tiny trained run, four images, and a checkpoint of the authors' layout (random values)."""
    from shortcut_models.metrics.digits_net import load_digits_feature_net

    load_digits_feature_net()  # trained and cached now if missing: not under the limit
    root = tmp_path_factory.mktemp("inputs")
    assert cli.main(["train", "--out", str(root / "run"), "--quiet", *TINY]) == 0
    rng = np.random.default_rng(0)
    for i in range(4):
        png(root / "images" / f"{i}.png", rng, size=(32, 32))
    arch = AuthorsArchitecture(32, 1, 2, 4, 4.0, 2, 3)
    tree = nest({k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in authors_parameter_shapes(arch).items()})
    state = {"params": tree, "params_ema": tree, "opt_state": (), "step": 7}
    (root / "jax.pkl").write_bytes(pickle.dumps({"train_state": state, "_timestamp": 0.0}))
    return {"RUN": str(root / "run"), "IMAGES": str(root / "images"), "JAX": str(root / "jax.pkl")}


# command -> (argv with OUT for the output path, the file whose write fails)
COMMANDS = {
    "sample-npz": (["sample", "--ckpt", "RUN", "--steps", "1", "--num", "2000", "--out", "OUT/s.npz"], "s.npz"),
    "sample-png": (["sample", "--ckpt", "RUN", "--steps", "1", "--num", "2000", "--out", "OUT/s.png"], "s.png"),
    "eval": (
        ["eval", "--ckpt", "RUN", "--steps", "1", "--num", "50", "--quiet", "--out", "OUT"],
        "metric_vs_steps.png",
    ),
    "encode": (
        ["encode", "--data", "IMAGES", "--vae", "identity", "--resolution", "32", "--shard-size", "2", "--quiet"]
        + ["--out", "OUT"],
        "shard_00000.safetensors",
    ),
    "ref-stats": (["ref-stats", "--data", "digits", "--num", "200", "--quiet", "--out", "OUT/stats.npz"], "stats.npz"),
    "convert": (
        ["convert", "--from-jax", "JAX", "--num-heads", "2", "--data-shape", "4x8x8", "--vae", "none", "--quiet"]
        + ["--out", "OUT"],
        "checkpoint step_00000007",
    ),
    "demo": (
        ["demo", "--quick", "--quiet", "--out", "OUT"],
        "flow-tuned-seed0/eval.png",
    ),  # the FD plot during training
    "study": (["study", "--quick", "--quiet", "--out", "OUT"], "OUT"),  # a file in OUT (the first checkpoint)
}


def _argv(argv: list[str], names: dict[str, str], out: Path) -> list[str]:
    return [names.get(a, str(out) + a[3:] if a.startswith("OUT") else a) for a in argv]


@contextlib.contextmanager
def file_size_limit(limit: int = LIMIT):
    """Writes past ``limit`` bytes fail with EFBIG (Python ignores SIGXFSZ) while the block runs."""
    import matplotlib.figure  # noqa: F401 - its font cache is written on first import, not under the limit

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def assert_all_readable(root: Path) -> list[str]:
    """Every file under ``root`` opens with its reader; no temporary file is left. Returns the names."""
    from PIL import Image
    from safetensors.torch import load_file

    names = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        assert not path.name.endswith(".tmp") and ".tmp-" not in str(path), f"temporary file left: {path}"
        names.append(str(path.relative_to(root)))
        if path.name == runlock.LOCK_FILE:
            continue
        suffix = path.suffix
        if suffix == ".npz":
            with np.load(path) as data:
                assert all(data[k] is not None for k in data.files) and data.files, path
        elif suffix == ".png":
            with Image.open(path) as image:
                image.load()
        elif suffix == ".json":
            json.loads(path.read_text())
        elif suffix == ".csv":
            with open(path, newline="") as fh:
                list(csv.reader(fh))
        elif suffix == ".safetensors":
            load_file(str(path))
        elif suffix == ".pt":
            torch.load(path, weights_only=True)
        elif suffix in (".md", ".txt"):
            path.read_text()
        elif path.name.startswith("events.out.tfevents."):  # TensorBoard's log: records appended, each whole
            path.read_bytes()
        else:
            raise AssertionError(f"no reader known for {path}")
    return names


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_file_size_limit_is_one_line_and_leaves_nothing_unreadable(command, inputs, tmp_path, capsys):
    argv, failing = COMMANDS[command]
    out = tmp_path / "out"
    with file_size_limit():
        code = cli.main(_argv(argv, inputs, out))
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and err[-1] == errors[0], err
    failing = str(out) if failing == "OUT" else failing
    assert failing in errors[0] and "file-size limit (ulimit -f)" in errors[0], errors[0]
    if out.exists():
        assert_all_readable(out)


def test_a_failed_write_leaves_the_previous_file_as_it_was(inputs, tmp_path, capsys):
    target = tmp_path / "s.npz"
    base = ["sample", "--ckpt", inputs["RUN"], "--steps", "1", "--out", str(target)]
    assert cli.main([*base, "--num", "10"]) == 0
    before = target.read_bytes()
    with file_size_limit():
        assert cli.main([*base, "--num", "2000"]) == 1
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]
    assert f"cannot write {target}: the file would exceed the file-size limit" in capsys.readouterr().err


def test_sample_sheets_under_the_limit(inputs, tmp_path):
    from shortcut_models.inference import load_model, write_sample_sheets

    loaded = load_model(inputs["RUN"], "cpu")
    with file_size_limit(), pytest.raises(WriteFailed, match="steps_001.png: the file would exceed"):
        write_sample_sheets(loaded, tmp_path / "sheets", steps=(1, 2))
    assert assert_all_readable(tmp_path / "sheets") == []


# every command with an --out: argv up to --out (the rest is never reached: the check comes first)
OUT_OPTIONS = {
    "train": ["train"],
    "sample": ["sample", "--ckpt", "RUN", "--steps", "1"],
    "eval": ["eval", "--ckpt", "RUN"],
    "encode": ["encode", "--data", "IMAGES"],
    "ref-stats": ["ref-stats", "--data", "digits"],
    "convert": ["convert", "--from-jax", "JAX"],
    "demo": ["demo"],
    "study": ["study"],
}


@pytest.mark.parametrize("command", list(OUT_OPTIONS))
@pytest.mark.parametrize("where", ["loop", "below a loop", "link to nothing"])
def test_an_out_through_a_bad_symbolic_link_is_refused_before_work(command, where, tmp_path, capsys):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing" / "x")
    name = "x.npz" if command in ("sample", "ref-stats") else "x"
    out = {"loop": "loop", "below a loop": f"loop/{name}", "link to nothing": "dangling"}[where]
    assert cli.main([*OUT_OPTIONS[command], "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "Traceback" not in err, err
    assert ("symbolic link loop" if where != "link to nothing" else "symbolic link to nothing") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "loop"]


@pytest.mark.parametrize("command", ["eval", "encode", "demo", "study"])
def test_a_second_writer_on_an_out_in_use_exits_2_naming_the_holder(command, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    argv = {
        "eval": ["eval", "--ckpt", inputs["RUN"], "--steps", "1", "--num", "20"],
        "encode": ["encode", "--data", inputs["IMAGES"], "--vae", "identity"],
        "demo": ["demo", "--quick"],
        "study": ["study", "--quick"],
    }[command]
    with open(out / runlock.LOCK_FILE, "w") as held:  # another open file: flock conflicts as between processes
        held.write(json.dumps({"host": "h", "pid": 4242, "started": "then", "use": "shortcut eval"}))
        held.flush()
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cli.main([*argv, "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{out} is in use by another shortcut eval (pid 4242 on host h, started then)" in err
    assert sorted(p.name for p in out.iterdir()) == [runlock.LOCK_FILE]


def test_eval_holds_its_out_and_leaves_no_directory_when_it_fails_first(inputs, tmp_path, capsys):
    assert cli.main(["eval", "--ckpt", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
    assert (
        cli.main(
            ["eval", "--ckpt", inputs["RUN"], "--steps", "1", "--num", "20", "--quiet", "--out", str(tmp_path / "e")]
        )
        == 0
    )
    assert (tmp_path / "e" / runlock.LOCK_FILE).read_text() == ""  # released
    assert assert_all_readable(tmp_path / "e") == [".lock", "metric_vs_steps.png", "metrics.csv", "metrics.json"]


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_a_count_the_machine_cannot_hold_is_refused_at_once(command, inputs, tmp_path, capsys):
    out = tmp_path / ("s.npz" if command == "sample" else "e")
    argv = [command, "--ckpt", inputs["RUN"], "--steps", "1", "--num", str(10**12), "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--num 1000000000000: the result needs at least" in err, err
    assert "of memory" in err and not out.exists()


def test_encode_refuses_a_cache_larger_than_the_free_space(inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(capacity, "free_disk", lambda path: 500)
    argv = ["encode", "--data", inputs["IMAGES"], "--vae", "identity", "--resolution", "32", "--quiet"]
    assert cli.main([*argv, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "encoding 4 images: the output needs at least 98.4 kB on the disk" in err and "500 bytes free" in err
    assert not list((tmp_path / "c").glob("shard_*"))


def test_an_encode_killed_at_its_first_write_is_resumed(inputs, tmp_path, monkeypatch):
    """A kill right after the first file of a new cache (found by the soak): the next start resumes it."""
    from shortcut_models.data import latents

    writes = []
    real = latents._write_atomic

    def killed_at_the_second_write(path, write):
        if writes:
            raise KeyboardInterrupt  # what kill -9 leaves: the first file whole, nothing after it
        writes.append(path.name)
        real(path, write)

    argv = ["encode", "--data", inputs["IMAGES"], "--vae", "identity", "--resolution", "32", "--quiet"]
    monkeypatch.setattr(latents, "_write_atomic", killed_at_the_second_write)
    assert cli.main([*argv, "--out", str(tmp_path / "c")]) == 130
    monkeypatch.setattr(latents, "_write_atomic", real)
    assert cli.main([*argv, "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["complete"]


# ------------------------------------------------------------------------------ the writer itself


def test_a_write_is_whole_or_absent_and_tidies_temporary_files_of_dead_processes(tmp_path):
    target = tmp_path / "a.json"
    outputs.write_json(target, {"v": 1})
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not outputs._alive(pid))
    stale, live = tmp_path / f".a.json.{dead}.tmp", tmp_path / f".a.json.{os.getppid()}.tmp"
    stale.write_text("half")
    live.write_text("a write under way")
    with pytest.raises(ValueError, match="not a write error"), outputs.writing(target) as tmp:
        tmp.write_text("half")
        raise ValueError("not a write error")  # passed on unchanged, the temporary file removed
    assert json.loads(target.read_text()) == {"v": 1}
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "a.json"]


def test_a_directory_is_written_whole_or_absent_and_tidies_what_killed_writers_left(tmp_path):
    """outputs.writing_dir (the folder of `shortcut export`): a failure leaves no directory, a success renames
    the whole one into place, a killed writer's directory is removed by the next write, a live one's kept."""
    target = tmp_path / "folder"
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not outputs._alive(pid))
    stale, live = tmp_path / f".folder.{dead}.tmp", tmp_path / f".folder.{os.getppid()}.tmp"
    for d in (stale, live):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "half").write_text("cut short")
    with pytest.raises(ValueError, match="not a write error"), outputs.writing_dir(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise ValueError("not a write error")
    assert not target.exists() and not stale.exists() and live.exists()
    target.mkdir()  # an empty directory is taken
    with outputs.writing_dir(target) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("whole")
    assert (target / "sub" / "b.txt").read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "folder"]


def test_a_later_writer_of_the_directory_removes_what_killed_writes_left(inputs, tmp_path):
    """A finished run's sheet cut short by a kill is not written again: the next lock holder tidies it."""
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not outputs._alive(pid))
    out = tmp_path / "e"
    (out / "samples").mkdir(parents=True)
    left = [out / "samples" / f".sheet.png.{dead}.tmp", out / f".metrics.json.{dead}.tmp"]
    kept = [out / "samples" / f".sheet.png.{os.getppid()}.tmp", out / "samples" / "notes.tmp"]
    for path in left + kept:
        path.write_text("cut short")
    assert cli.main(["eval", "--ckpt", inputs["RUN"], "--steps", "1", "--num", "20", "--quiet", "--out", str(out)]) == 0
    assert not any(p.exists() for p in left) and all(p.exists() for p in kept)


def test_a_link_to_a_file_is_written_through(tmp_path):
    (tmp_path / "real.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    outputs.write_text(tmp_path / "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "new"


@pytest.mark.parametrize(
    "error, words",
    [
        (OSError(28, "No space left on device"), "no space left on the disk"),
        (OSError(30, "Read-only file system"), "the file system is read-only"),
        (OSError(13, "Permission denied"), "permission denied"),
        (RuntimeError("Error while serializing: I/O error: File too large (os error 27)"), "the file would exceed"),
    ],
)
def test_each_cause_is_named_in_words(error, words, tmp_path):
    with (
        pytest.raises(WriteFailed, match=f"cannot write {tmp_path / 'x.bin'}: {words}"),
        outputs.writing(tmp_path / "x.bin"),
    ):
        raise error
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ a full disk (a small tmpfs)


@pytest.fixture
def small_disk(tmp_path):
    """``fill(free)``: a 3 MB file system (tmpfs) mounted in ``tmp_path``, filled up to ``free`` bytes (0:
    every write fails with ENOSPC). Skipped where this process may not mount one (not root, a container)."""
    import shutil
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {done.stderr.strip()[:200]}")

    def fill(free: int = 0) -> Path:
        block = b"\0" * 4096
        with open(disk / "filler", "wb") as fh:
            try:
                while os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize > free:
                    fh.write(block)
                    fh.flush()
            except OSError:  # full
                pass
        return disk

    try:
        yield fill
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# every command that locks its --out: argv up to --out (placeholders as COMMANDS)
LOCKING = {
    "train": ["train", "--preset", "checkerboard", *TINY[2:], "--quiet"],
    "eval": ["eval", "--ckpt", "RUN", "--steps", "1", "--num", "20", "--quiet"],
    "encode": ["encode", "--data", "IMAGES", "--vae", "identity", "--resolution", "32", "--quiet"],
    "demo": ["demo", "--quick", "--quiet"],
    "study": ["study", "--quick", "--quiet"],
}


@pytest.mark.parametrize("command", list(LOCKING))
def test_a_full_disk_at_the_lock_is_one_line_and_exit_1(command, inputs, small_disk, capsys):
    disk = small_disk(0)
    out = disk / "out"
    assert cli.main([*_argv(LOCKING[command], inputs, out), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err == f"error: cannot write {out / runlock.LOCK_FILE}: no space left on the disk"


def test_a_checkpoint_that_fills_the_disk_says_so(small_disk):
    """The weights fit, state.pt does not: the cause is named as for every other file (torch's own
    message for a stream that fails is '[enforce fail at inline_container.cc] unexpected pos ...')."""
    from shortcut_models import checkpoints as ckpt

    disk = small_disk(256 * 1024)
    net = torch.nn.Linear(2, 2)
    state = {"optimizer": {"moments": torch.zeros(400_000)}}  # 1.6 MB
    with pytest.raises(WriteFailed) as caught:
        ckpt.save_checkpoint(disk / "run", 1, {}, net, net, state)
    message = str(caught.value)
    assert (
        message == f"cannot write checkpoint step_00000001 in {disk / 'run' / 'checkpoints'}: no space left on the disk"
    )
    assert list((disk / "run" / "checkpoints").iterdir()) == []  # the partial directory is removed
