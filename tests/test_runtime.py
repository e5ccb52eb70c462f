"""Runtime helpers on the CPU (the CUDA fast paths are in test_gpu.py): the host-sync-free copy changes no value."""

import torch

from shortcut_models.runtime import to_device


def test_to_device_keeps_values_on_cpu():
    x = torch.arange(6.0).reshape(2, 3)
    out = to_device(x, "cpu")
    assert torch.equal(out, x) and out.device.type == "cpu"
