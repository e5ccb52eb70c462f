"""What every test shares: the same global random state at the start of each test, the test order
(--reverse, pytest-randomly's seed in the summary), the allocator settings of the `shortcut` command.

pytest runs with --import-mode=importlib: tests import nothing from each other. Fixtures are grouped by
concern in tests/fixtures/ (registered below, so every folder sees them) or live in the conftest.py of
the only folder that uses them (objectives/: batches; training/: trainer states; evaluation/: metric
networks' weights; diffusers_export/: exported runs)."""

import pytest
import torch

# tests/ is on sys.path (pythonpath in pyproject.toml): a `tests` package elsewhere cannot shadow these.
pytest_plugins = [
    "fixtures.runs",  # tiny DiT-Nano runs, one thread
    "fixtures.images",  # PNG files, the tiny VAE, a latent cache
    "fixtures.wandb",  # W&B offline runs and their logged rows
    "fixtures.reference_code",  # the authors' and other reference code, for differential tests
]


@pytest.fixture(autouse=True)
def _deterministic_random():
    """Every test starts from the same global random state (torch, numpy, random), whichever tests ran
    before it: a draw without an explicit generator cannot depend on the order tests run in."""
    import random

    import numpy as np

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield


def pytest_addoption(parser):
    parser.addoption(
        "--reverse",
        action="store_true",
        help="run the tests in reverse file order (with -p no:randomly): an order dependence shows up",
    )


def pytest_configure(config):
    """The same allocator settings as the `shortcut` command (see shortcut_models.runtime)."""
    from shortcut_models.runtime import tune_allocator

    tune_allocator()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        items.reverse()


def pytest_terminal_summary(terminalreporter, config):
    """Say which order the tests ran in, and how to run that order again (pytest-randomly's seed)."""
    seed = getattr(config.option, "randomly_seed", None)
    if config.getoption("--reverse"):
        terminalreporter.write_line("test order: reverse file order (--reverse)")
    elif seed is not None and config.pluginmanager.hasplugin("randomly"):
        terminalreporter.write_line(
            f"test order: random, --randomly-seed={seed} repeats it; -p no:randomly runs the tests in file order"
        )
