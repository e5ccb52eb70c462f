"""Shared fixtures: small threads count keeps CPU tests predictable on 2-core machines."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    """The same allocator settings as the `shortcut` command (see shortcut_models.runtime)."""
    from shortcut_models.runtime import tune_allocator

    tune_allocator()
