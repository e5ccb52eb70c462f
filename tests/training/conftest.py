"""Fixtures of the training tests: the tensors a trainer's state holds, compared between two trainers."""

import pytest
import torch


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
