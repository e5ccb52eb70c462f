"""The layer contract (pyproject.toml, checked by lint-imports): the package keeps it, and an import
that goes upward breaks it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")


def lint(package_parent: Path, cwd: Path) -> subprocess.CompletedProcess:
    """lint-imports with the project's contract on the ``shortcut_models`` found in ``package_parent``."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_layers(tmp_path):
    result = lint(ROOT / "src", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout


@pytest.mark.parametrize(
    "module, upward",
    [
        ("models/mlp.py", "from ..training import trainer"),  # the bottom layer reaching the top
        ("objectives/base.py", "from .. import checkpoints"),  # maths reaching the run files
        ("data/sources.py", "from .. import inference"),  # data reaching the sampler
        ("training/ema.py", "from .. import evaluation"),  # two siblings of one layer
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    copy = tmp_path / "pkg" / "shortcut_models"
    shutil.copytree(ROOT / "src" / "shortcut_models", copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{upward}  # noqa: E402,F401\n")
    result = lint(tmp_path / "pkg", tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    importer = "shortcut_models." + module.removesuffix(".py").replace("/", ".")
    assert importer in result.stdout, result.stdout
