"""Shared fixtures and helpers (pytest runs with --import-mode=importlib: tests import nothing from
each other; what several files need lives here)."""

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


def trainer_tensors(trainer) -> dict[str, torch.Tensor]:
    """Copies of every tensor a trainer's state holds: weights, EMA weights, optimizer moments."""
    out = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    out.update({f"ema.{k}": v.clone() for k, v in trainer.ema.module.state_dict().items()})
    for i, st in enumerate(trainer.optimizer.state.values()):
        for k, v in st.items():
            out[f"opt.{i}.{k}"] = v.clone() if torch.is_tensor(v) else torch.tensor(v)
    return out


@pytest.fixture
def assert_same_state():
    """``assert_same_state(a, b)``: model, EMA and optimizer tensors of two trainers are bit-identical."""

    def check(a_trainer, b_trainer) -> None:
        a, b = trainer_tensors(a_trainer), trainer_tensors(b_trainer)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k

    return check


def write_format_1(checkpoint_dir, drop=("init_from",)) -> dict:
    """Rewrite a checkpoint's config.json in the layout of checkpoints written before config.json
    described the network (format 1): the training config alone, objective knobs as top-level keys
    (clip was not a setting then), ``tensorboard`` instead of ``logger``, and the keys in ``drop``
    absent. Returns the written dict."""
    import json
    from pathlib import Path

    file = Path(checkpoint_dir) / "config.json"
    training = dict(json.loads(file.read_text())["training"])
    knobs = {"bootstrap_every": 8, "bootstrap_ema": True, "bootstrap_cfg": False, "cfg_scale": 1.0, "dt_bias": False,
             "class_dropout": 0.0, "max_steps": 128, **training.pop("objective_args")}
    training.update(knobs)
    training["tensorboard"] = training.pop("logger") != "none"
    for key in drop:
        training.pop(key, None)
    file.write_text(json.dumps(training, indent=2))
    return training


@pytest.fixture
def as_format_1():
    """``as_format_1(checkpoint_dir, drop=("init_from",))``: see :func:`write_format_1`."""
    return write_format_1
