"""A checkpoint of another format (another release's: format 2, or format 1 without ``format_version``) is
refused by every reader (sample, eval, a resumed run, init_from, teacher) with one line naming the file,
its format and the release that reads it, exit code 2; it is left as it was: not set aside as damaged,
not passed over for an older checkpoint of the run."""

import json
import shutil

import pytest

from shortcut_models import __version__
from shortcut_models import checkpoints as ckpt
from shortcut_models.cli import main
from shortcut_models.config import build_config
from shortcut_models.inference import load_model
from shortcut_models.training import Trainer

TOY = ["model_args.width=16", "model_args.depth=1", "batch_size=16", "logger=none", "sample_steps=[1]"]
TOY += ["eval_every=0", "ckpt_every=2"]
CLI = ["--preset", "checkerboard", "--quiet", *TOY]
# a checkpoint config.json as the releases before 0.2.0 wrote it, from today's
OLD_FORMATS = {
    2: lambda config: {**config, "format_version": 2},
    1: lambda config: config["training"],  # format 1: the training config alone
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    """A flow-matching run with checkpoints at steps 2 and 4 (a teacher run, a source of init_from)."""
    run = tmp_path_factory.mktemp("flow") / "run"
    Trainer(build_config("checkerboard", "flow", None, [*TOY, "steps=4"]), run, progress=False).run()
    return run


@pytest.fixture(params=list(OLD_FORMATS))
def old_run(request, flow_run, tmp_path):
    """(a copy of :func:`flow_run` whose checkpoints are of an older format, that format)."""
    run = tmp_path / "old"
    shutil.copytree(flow_run, run)
    for path in ckpt.list_checkpoints(run):
        file = path / ckpt.CONFIG
        file.write_text(json.dumps(OLD_FORMATS[request.param](json.loads(file.read_text()))))
    return run, request.param


def files(run):
    """Every file under the run's checkpoints directory and its bytes."""
    root = run / ckpt.CHECKPOINTS
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_refused(capsys, run, version) -> None:
    """stderr is the one line naming the newest checkpoint's config.json, its format and the release."""
    err = capsys.readouterr().err.strip()
    file = ckpt.latest_checkpoint(run) / ckpt.CONFIG
    assert err == (
        f"error: {file} is a checkpoint of format {version}, written by shortcut-models 0.1.x; this is "
        f"{__version__} (format {ckpt.FORMAT_VERSION}): read it with shortcut-models 0.1.0"
    )


def test_this_release_writes_format_3():
    assert (__version__, ckpt.FORMAT_VERSION) == ("0.2.0", 3)


def test_sample_and_eval_refuse_it(old_run, tmp_path, capsys):
    run, version = old_run
    before = files(run)
    with pytest.raises(ckpt.OtherFormat, match=f"format {version}, written by shortcut-models 0.1.x"):
        load_model(run, "cpu")
    sample = ["sample", "--ckpt", str(run), "--steps", "1", "--num", "4", "--out", str(tmp_path / "s.npz")]
    assert main(sample) == 2
    assert_refused(capsys, run, version)
    evaluate = ["eval", "--ckpt", str(run), "--steps", "1", "--num", "50", "--out", str(tmp_path / "e"), "--quiet"]
    assert main(evaluate) == 2
    assert_refused(capsys, run, version)
    assert not (tmp_path / "s.npz").exists() and not (tmp_path / "e" / "metrics.json").exists()
    assert files(run) == before


def test_a_resumed_run_refuses_it_and_renames_nothing(old_run, capsys):
    run, version = old_run
    before = files(run)
    assert main(["train", "--out", str(run), "--objective", "flow", *CLI, "steps=6"]) == 2
    assert_refused(capsys, run, version)
    assert files(run) == before  # no damaged-step_N, no new checkpoint


def test_init_from_and_teacher_refuse_it(old_run, tmp_path, capsys):
    run, version = old_run
    before = files(run)
    tuned = tmp_path / "tuned"
    assert main(["train", "--out", str(tuned), "--objective", "flow", *CLI, "steps=2", f"init_from={run}"]) == 2
    assert_refused(capsys, run, version)
    student = tmp_path / "student"
    assert (
        main(["train", "--out", str(student), "--objective", "consistency-distillation", *CLI, f"teacher={run}"]) == 2
    )
    assert_refused(capsys, run, version)
    assert not ckpt.list_checkpoints(tuned) and not ckpt.list_checkpoints(student)
    assert files(run) == before


def test_a_newer_format_asks_for_an_upgrade_and_a_bad_one_is_damaged(flow_run, tmp_path):
    checkpoint = tmp_path / "step_00000004"
    shutil.copytree(ckpt.latest_checkpoint(flow_run), checkpoint)
    config = json.loads((checkpoint / ckpt.CONFIG).read_text())
    (checkpoint / ckpt.CONFIG).write_text(json.dumps({**config, "format_version": 4}))
    with pytest.raises(ckpt.OtherFormat, match="format 4, written by a newer shortcut-models; this is 0.2.0"):
        ckpt.read_config(checkpoint)
    (checkpoint / ckpt.CONFIG).write_text(json.dumps({**config, "format_version": "3"}))
    with pytest.raises(ckpt.DamagedCheckpoint, match="format_version '3', not a checkpoint format"):
        ckpt.read_config(checkpoint)
