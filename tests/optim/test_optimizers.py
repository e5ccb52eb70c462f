"""Optimisers: each name builds the class asked for with the config's settings, and trains a toy."""

import pytest
import torch

from shortcut_models.config import TrainConfig, build_config
from shortcut_models.optim import OPTIMIZERS, build_optimizer
from shortcut_models.training import Trainer

CLASSES = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
CPU = torch.device("cpu")


def test_every_optimizer_is_tested():
    assert set(CLASSES) == set(OPTIMIZERS)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_the_multi_tensor_kernel_gives_the_per_tensor_loops_numbers(name):
    """On the CPU the optimisers run their multi-tensor kernel: bit for bit what the per-tensor loop (PyTorch's
    CPU default) computes, over steps with weight decay and a changing learning rate.

    Exact on any machine: on the CPU every torch._foreach_* op runs the per-tensor kernel on each tensor in
    turn, so both paths apply the same element-wise kernels, in the same order, to the same tensors (checked
    with the scalar, AVX2 and AVX-512 kernels)."""
    cfg = TrainConfig(optimizer=name, lr=0.01, beta1=0.8, beta2=0.99, weight_decay=0.05, momentum=0.5)
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, generator=g) for shape in ((32, 16), (16,), (2, 3, 4, 4))]
    grads = [[torch.randn(p.shape, generator=g) for p in start] for _ in range(12)]

    def train(make):
        params = [p.clone().requires_grad_() for p in start]
        opt = make(params)
        for i, step_grads in enumerate(grads):
            for p, grad in zip(params, step_grads):
                p.grad = grad.clone()
            opt.param_groups[0]["lr"] = 0.01 * (i + 1) / len(grads)
            opt.step()
        return params

    ours = train(lambda params: build_optimizer(cfg, params, CPU))

    def per_tensor(params):
        opt = build_optimizer(cfg, params, CPU)
        opt.param_groups[0]["foreach"] = False  # read at every step: the per-tensor loop
        return opt

    loop = train(per_tensor)
    assert all(torch.equal(a, b) for a, b in zip(ours, loop))
    assert not torch.equal(ours[0], start[0])


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_each_name_builds_its_class_with_the_settings(name):
    cfg = TrainConfig(optimizer=name, lr=0.01, beta1=0.8, beta2=0.99, weight_decay=0.05, momentum=0.5)
    opt = build_optimizer(cfg, torch.nn.Linear(3, 2).parameters(), CPU)
    assert type(opt) is CLASSES[name]
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["fused"], group["foreach"]) == (0.01, 0.05, None, True)
    if name == "sgd":
        assert group["momentum"] == 0.5
    else:
        assert group["betas"] == (0.8, 0.99)


def test_the_default_is_the_former_adamw_exactly():
    """Same settings, same numbers: exact on any machine for the reason given in the multi-tensor test above
    (the forward and backward passes are one computation repeated on identical networks)."""
    cfg = TrainConfig(lr=3e-4, beta1=0.85, beta2=0.95, weight_decay=0.1)
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 4)
    b = torch.nn.Linear(4, 4)
    b.load_state_dict(a.state_dict())
    ours = build_optimizer(cfg, a.parameters(), CPU)
    former = torch.optim.AdamW(
        b.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay, fused=False
    )
    settings = [
        {k: v for k, v in g.items() if k not in ("foreach", "fused")} for g in ours.state_dict()["param_groups"]
    ]
    assert settings == [
        {k: v for k, v in g.items() if k not in ("foreach", "fused")} for g in former.state_dict()["param_groups"]
    ]
    for opt, net in ((ours, a), (former, b)):
        for _ in range(3):
            opt.zero_grad()
            net(torch.ones(2, 4)).square().sum().backward()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("name, lr", [("adamw", 3e-3), ("adam", 3e-3), ("sgd", 0.1)])
def test_each_optimizer_trains_a_toy(name, lr, tmp_path, one_thread):
    """Flow matching on the checkerboard: the mean loss of the last 50 of 300 steps is well below the first 50's
    (SGD starts slowly: the network's output layer starts at zero)."""
    overrides = [
        f"optimizer={name}",
        f"lr={lr}",
        "model_args.width=32",
        "model_args.depth=1",
        "batch_size=128",
        "steps=300",
        "log_every=50",
        "ckpt_every=1000",
        "sample_steps=[1]",
        "logger=none",
    ]
    trainer = Trainer(build_config("checkerboard", "flow", None, overrides), tmp_path, progress=False)
    assert type(trainer.optimizer) is CLASSES[name]
    losses = []
    trainer.run(on_log=lambda step, row: losses.append(row["loss"]))
    assert len(losses) == 6 and losses[-1] < 0.9 * losses[0], losses


def test_adding_a_schedule_and_an_optimizer_is_one_function_and_one_line_each(monkeypatch, tmp_path):
    """The worked example of docs/architecture.md: registered, they are accepted by the config and train."""
    from shortcut_models.optim import LR_SCHEDULES, learning_rate
    from shortcut_models.optim.schedules import warming_up, warmup

    def step_decay(step, total_steps, s):
        """lr, divided by 10 after each third of the steps (after the warm-up)."""
        if warming_up(step, s):
            return warmup(step, s)
        return s.lr * 0.1 ** min(2, 3 * step // total_steps)

    def nadam(params, s, fused):
        """NAdam (no fused kernel)."""
        return torch.optim.NAdam(params, lr=s.lr, betas=(s.beta1, s.beta2), weight_decay=s.weight_decay)

    monkeypatch.setitem(LR_SCHEDULES, "step", step_decay)
    monkeypatch.setitem(OPTIMIZERS, "nadam", nadam)
    tiny = ["model_args.width=16", "model_args.depth=1", "batch_size=16", "steps=6", "logger=none", "sample_steps=[1]"]
    cfg = build_config("checkerboard", "flow", None, [*tiny, "lr_schedule=step", "optimizer=nadam", "lr=0.01"])
    assert [learning_rate(cfg, s) for s in range(6)] == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])
    trainer = Trainer(cfg, tmp_path, progress=False)
    assert type(trainer.optimizer) is torch.optim.NAdam
    trainer.run()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0001)
