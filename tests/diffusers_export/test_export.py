"""`shortcut export --format diffusers`: the folder, its model card (measured scores only), bad input in one line
with exit 2, nothing left by a failed export, and a core package that never imports diffusers."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from shortcut_models import checkpoints as ckpt
from shortcut_models.cli import main

pytest.importorskip("diffusers")
from shortcut_models.diffusers import ShortcutPipeline, export_diffusers  # noqa: E402
from shortcut_models.diffusers import export as export_module  # noqa: E402


def card_of(folder):
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


def test_the_card_holds_the_metadata_the_scores_of_the_run_and_code_that_runs(runs):
    run, folder = runs["shortcut"]
    card = card_of(folder)
    meta = card.data.to_dict()
    assert meta["library_name"] == "diffusers" and meta["pipeline_tag"] == "unconditional-image-generation"
    assert (meta["license"], meta["datasets"], meta["objective"]) == ("mit", ["digits"], "shortcut")
    assert {"shortcut-models", "shortcut", "class-conditional"} <= set(meta["tags"])
    # the scores: RUN/eval.csv's rows at the exported step (2), at 1, 2, 4 and 128 steps
    with open(run / "eval.csv") as fh:
        rows = {int(r["steps"]): float(r["fd_digits"]) for r in csv.DictReader(fh) if r["step"] == "2"}
    assert sorted(rows) == [1, 2, 4, 128]
    line = next(x for x in card.text.splitlines() if x.startswith("| evaluation during training"))
    assert line.split(" | ")[1:4] == ["fd_digits", "20", "1"]
    assert [float(v) for v in line.rstrip(" |").split(" | ")[4:]] == pytest.approx(
        [rows[n] for n in (1, 2, 4, 128)], rel=1e-3
    )
    assert "![samples at 1, 2, 4 steps](samples.png)" in card.text
    assert (folder / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "steps | 2 |" in card.text and "exported checkpoint | step 2 (EMA weights)" in card.text
    # the three lines of code on the card run as they are and generate
    code = re.search(r"```python\n(.*?)```", card.text, flags=re.S).group(1)
    assert len(code.strip().splitlines()) == 3
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the card this test wrote
    assert len(namespace["images"]) == 4 and namespace["images"][0].size == (8, 8)


def test_a_run_without_evaluation_gets_a_card_without_scores(runs):
    card = card_of(runs["flow"][1])
    assert "this card reports no scores" in card.text
    assert "| evaluation during training" not in card.text and "not measured" not in card.text


def test_the_scores_of_shortcut_eval_join_the_card(runs, tmp_path, capsys):
    run = shutil.copytree(runs["shortcut"][0], tmp_path / "run")
    evaluated = tmp_path / "eval"
    steps = ["--steps", "1,4", "--num", "20"]
    assert main(["eval", "--ckpt", str(run), *steps, "--device", "cpu", "--quiet", "--out", str(evaluated)]) == 0
    measured = {r["steps"]: r["fd_digits"] for r in json.loads((evaluated / "metrics.json").read_text())["rows"]}
    out = tmp_path / "exported"
    assert (
        main(
            ["export", "--ckpt", str(run), "--out", str(out), "--eval", str(evaluated), "--grid-steps", "1", "--quiet"]
        )
        == 0
    )
    line = next(x for x in card_of(out).text.splitlines() if x.startswith("| `shortcut eval`"))
    cells = line.rstrip(" |").split(" | ")[4:]
    assert float(cells[0]) == pytest.approx(measured[1], rel=1e-3) and float(cells[2]) == pytest.approx(
        measured[4], rel=1e-3
    )
    assert cells[1] == cells[3] == "not measured"
    # results of another checkpoint are refused
    other = tmp_path / "other"
    assert main(["export", "--ckpt", str(runs["flow"][0]), "--out", str(other), "--eval", str(evaluated)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no scores of the checkpoint" in err and len(err.splitlines()) == 1 and not other.exists()


def run_without_weights(runs, tmp_path):
    run = shutil.copytree(runs["shortcut"][0], tmp_path / "no-weights")
    for file in ckpt.latest_checkpoint(run).glob("*.safetensors"):
        file.unlink()
    return run


@pytest.mark.parametrize(
    "args, message",
    [
        (["--grid-classes", "3,10"], "grid class 10 is not one of this model's classes 0..9"),
        (["--grid-classes", "3,-1"], "--grid-classes"),
        (["--grid-steps", "1,129"], "steps must be an integer from 1 to 128, got 129"),
        (["--grid-steps", "0"], "steps must be an integer from 1 to 128, got 0"),
        (["--format", "onnx"], "invalid choice: 'onnx'"),
        ("no weights", "is missing"),
        ("full out", "already holds files"),
        ("no checkpoint", "no checkpoint found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys, args, message):
    run, out = runs["shortcut"][0], tmp_path / "exported"
    if args == "no weights":
        run, args = run_without_weights(runs, tmp_path), []
    elif args == "full out":
        out.mkdir()
        (out / "mine.txt").write_text("keep me")
        args = []
    elif args == "no checkpoint":
        run, args = tmp_path / "absent", []
    assert main(["export", "--ckpt", str(run), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists() or [p.name for p in out.iterdir()] == ["mine.txt"]
    assert not list(tmp_path.glob(".exported.*"))


def test_bad_input_in_python(runs, latent_run, tmp_path):
    from shortcut_models.errors import UserError

    run = runs["shortcut"][0]
    with pytest.raises(ValueError, match="steps must be an integer from 1 to 128"):
        export_diffusers(run, tmp_path / "a", grid_steps=[129])
    with pytest.raises(UserError, match="grid class 10"):
        export_diffusers(run, tmp_path / "b", grid_labels=[10])
    with pytest.raises(UserError, match="is missing"):
        export_diffusers(run_without_weights(runs, tmp_path), tmp_path / "c")
    with pytest.raises(UserError, match="the model is unconditional"):
        export_diffusers(latent_run[0], tmp_path / "d", grid_labels=[0])
    assert not [p for p in tmp_path.iterdir() if p.name != "no-weights"]


def test_a_failed_export_leaves_nothing(runs, tmp_path, monkeypatch, capsys):
    """The check of the written folder against the checkpoint fails (a tolerance no sample can meet): exit 1,
    one line, no folder and no temporary directory."""
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)
    out = tmp_path / "exported"
    assert main(["export", "--ckpt", str(runs["shortcut"][0]), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "differ from the checkpoint's" in err[-1] and len(err) == 2  # the progress line, then the error
    assert list(tmp_path.iterdir()) == []


def test_an_export_into_an_empty_directory_and_its_grid_classes(runs, tmp_path):
    out = tmp_path / "exported"
    out.mkdir()
    done = export_diffusers(runs["imf"][0], out, grid_steps=[1, 3], grid_labels=[7, 7, 2], report=lambda line: None)
    assert done.out == out and done.step == 2 and done.max_difference == 0.0 and done.scores == 0
    assert "classes 7, 7, 2, row by row" in card_of(out).text
    pipe = ShortcutPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.network.guidance_input and len(pipe(class_labels=[1], guidance_scale=2.0).images) == 1


CORE = """
import sys
from shortcut_models.cli import main
import shortcut_models, shortcut_models.diffusers
for argv in (["--help"], ["export", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
print(sorted(m for m in sys.modules if m.split(".")[0] in ("diffusers", "huggingface_hub", "transformers")))
"""

WITHOUT = """
import sys
sys.modules["diffusers"] = None  # as if it were not installed: importing it raises ImportError
from shortcut_models.cli import main
print(main(["export", "--ckpt", sys.argv[1], "--out", sys.argv[2]]))
"""


def test_the_core_package_never_imports_diffusers(runs, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CORE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "export" in done.stdout and "--format" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
    out = tmp_path / "exported"
    cmd = [sys.executable, "-c", WITHOUT, str(runs["shortcut"][0]), str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "2" and not out.exists()
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: exporting to diffusers needs the diffusers package")
    assert err[0].endswith("pip install 'shortcut-models[diffusers]'")
