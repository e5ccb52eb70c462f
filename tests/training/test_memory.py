"""The batch-size check: what it measures (closed forms on small networks) and what it refuses."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from shortcut_models import cli
from shortcut_models.errors import UserError
from shortcut_models.training import Trainer
from shortcut_models.training.memory import activation_bytes_per_row, check_batch_fits, device_memory

CPU = torch.device("cpu")


class TwoLayers(nn.Module):
    """x -> Linear(8, H) -> ReLU -> Linear(H, 4) on the network interface ``model(x, t, d, y)``."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, hidden), nn.Linear(hidden, 4)

    def forward(self, x, t, d, y):
        return self.b(torch.relu(self.a(x)))


def test_activation_bytes_are_the_tensors_kept_for_backward():
    # per row, float32: the input of a (8 values), the output of relu (16, kept by relu and read by b): 96 bytes;
    # the weights are saved too, once per pass, and cancel between the passes of 1 and 2 rows
    assert activation_bytes_per_row(TwoLayers(), (8,), 0, CPU, None) == 4 * (8 + 16)
    # under bf16 autocast the saved copies are 2 bytes a value (the input is cast for the matmul)
    assert activation_bytes_per_row(TwoLayers(), (8,), 0, CPU, torch.bfloat16) == 2 * (8 + 16)


def test_the_check_refuses_only_what_cannot_fit():
    memory = device_memory(CPU)
    assert 2**28 < memory < 2**50
    model, act, data = TwoLayers(hidden=256), 4 * (8 + 256), 3 * 4 * 8  # bytes a row: activations, step data

    def check(rows: int, grad_accum: int = 1) -> None:
        check_batch_fits(model, (8,), 0, rows, grad_accum, CPU, amp_dtype=None)

    check(4096)
    rows = memory // act + 1  # the activations of one micro-batch exceed the memory, the step's data fit
    with pytest.raises(UserError, match="batch_per_gpu to at most") as err:
        check(rows)
    fits = int(str(err.value).split("at most ")[1].split()[0])
    assert memory - act < fits * act + data * rows <= memory
    check(rows, grad_accum=rows // fits + 1)  # micro-batches of fewer rows than that pass
    with pytest.raises(UserError, match="whatever grad_accum is"):  # one step's data alone: accumulating won't help
        check(memory // data + 1, grad_accum=memory // data + 1)


def test_the_trainer_refuses_a_batch_before_touching_the_run(nano_config, tmp_path):
    with pytest.raises(UserError, match="batch_size"):
        Trainer(nano_config("batch_size=100000000", "batch_per_gpu=1000"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_running_out_of_gpu_memory_is_one_line(monkeypatch, tmp_path, capsys):
    class Trainer:
        is_main, plan = True, SimpleNamespace(rows_per_rank=512, grad_accum=2)

        def run(self):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(cli.train, "build_trainer", lambda cfg, out, progress: Trainer())
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "256 rows" in err[1] and "batch_per_gpu" in err[1] and "grad_accum" in err[1]
