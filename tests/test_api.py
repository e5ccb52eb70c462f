"""The public Python interface: the names users and the README rely on, and __all__ everywhere."""

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import shortcut_models as sm

PUBLIC = [
    "DiT",
    "MLP",
    "FlowMatching",
    "Shortcut",
    "sample",
    "load_model",
    "TrainConfig",
    "Trainer",
    "EMA",
    "LoadedModel",
    "Objective",
    "build_config",
    "step_schedule",
]


def test_top_level_names():
    for name in PUBLIC:
        assert name in sm.__all__ and getattr(sm, name) is not None, name
    assert sm.DiT is sm.models.DiT and sm.MLP is sm.models.MLP
    assert sm.Shortcut is sm.objectives.Shortcut and sm.FlowMatching is sm.objectives.FlowMatching
    assert sm.load_model is sm.inference.load_model and sm.Trainer is sm.training.Trainer


def test_a_fresh_interpreter_sees_the_readme_names():
    """``sm.models.DiT`` must exist without importing shortcut_models.models.dit first."""
    code = "import shortcut_models as sm; sm.models.DiT; sm.load_model; sm.objectives.Shortcut; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_every_package_declares_all_and_its_names_exist():
    packages = [sm] + [
        importlib.import_module(m.name) for m in pkgutil.walk_packages(sm.__path__, "shortcut_models.") if m.ispkg
    ]
    assert {p.__name__ for p in packages} >= {
        "shortcut_models.data",
        "shortcut_models.models",
        "shortcut_models.objectives",
        "shortcut_models.training",
        "shortcut_models.inference",
        "shortcut_models.metrics",
        "shortcut_models.experiments",
    }
    for package in packages:
        assert hasattr(package, "__all__"), package.__name__
        missing = [n for n in package.__all__ if not hasattr(package, n)]
        assert not missing, (package.__name__, missing)


def test_the_version_is_the_one_the_package_is_built_with():
    """``sm.__version__`` (named when a checkpoint of another release is refused) is pyproject.toml's."""
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'\nversion = "{sm.__version__}"\n' in pyproject
