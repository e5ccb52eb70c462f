"""CUDA fast paths against the plain path (skipped without a GPU; run by benchmarks/gpu_check.sh).

What is checked: training steps and sampling make no host synchronisation once warm (CUDA's sync
debug mode turns any into an error); bf16 autocast gives the fp32 targets and loss within bf16
tolerance; torch.compile gives the eager samples and losses; the flash-attention kernel runs the DiT;
a short run trains, checkpoints, resumes and evaluates on the GPU through the command line.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
import torch

from shortcut_models import seeding
from shortcut_models.config import build_config
from shortcut_models.models.dit import DiT
from shortcut_models.objectives import Shortcut
from shortcut_models.sampling import sample
from shortcut_models.training import Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = torch.device("cuda")


@contextlib.contextmanager
def no_host_sync():
    """Any synchronising CUDA call (item(), a pageable copy, nonzero on the GPU...) raises inside."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def digits_trainer(tmp_path, objective: str, *extra: str) -> Trainer:
    cfg = build_config(
        "digits",
        objective,
        None,
        ["device=cuda", "logger=none", "batch_size=64", "bootstrap_cfg=true", "cfg_scale=1.5", *extra],
    )
    return Trainer(cfg, tmp_path / objective, progress=False)


def random_head(model: DiT, seed: int = 0) -> DiT:
    """Give the zero-initialised output layers random weights, so the network's output is not 0."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in [
            model.final_layer.linear,
            model.final_layer.adaLN_modulation[1],
            *[b.adaLN_modulation[1] for b in model.blocks],
        ]:
            module.weight.copy_(0.05 * torch.randn(module.weight.shape, generator=gen))
    return model


@pytest.mark.parametrize("objective", ["shortcut", "flow"])
def test_training_step_makes_no_host_sync(tmp_path, objective):
    trainer = digits_trainer(tmp_path, objective)
    for step in range(2):  # warm-up: allocator, pinned buffers, cuBLAS handles
        trainer.train_step(step)
    with no_host_sync():
        for step in range(2, 5):
            logs = trainer.train_step(step)
    assert torch.isfinite(logs["loss"]).item()


@pytest.mark.parametrize("steps,cfg_scale", [(1, 1.0), (7, 1.0), (4, 1.5)])
def test_sampling_makes_no_host_sync(steps, cfg_scale):
    model = random_head(DiT.from_preset("DiT-Digits", input_size=8, in_channels=1, num_classes=10)).to(CUDA).eval()
    noise = torch.randn(32, 1, 8, 8, device=CUDA)
    y = torch.arange(32, device=CUDA) % 10
    sample(model, noise, steps, y, cfg_scale)  # warm-up
    with no_host_sync():
        out = sample(model, noise, steps, y, cfg_scale)
    expected = sample(model.cpu(), noise.cpu(), steps, y.cpu(), cfg_scale)
    torch.testing.assert_close(out.cpu(), expected, atol=2e-3, rtol=2e-3)  # TF32 on the GPU


def test_bf16_targets_and_loss_match_fp32():
    model = random_head(DiT.from_preset("DiT-S/2", input_size=32, in_channels=4, num_classes=10)).to(CUDA).eval()
    objective = Shortcut(num_classes=10, class_dropout=0.1, bootstrap_every=4, bootstrap_cfg=True, cfg_scale=1.5)
    x1 = torch.randn(64, 4, 32, 32, device=CUDA)
    y = torch.arange(64, device=CUDA) % 10
    results = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        gen = seeding.generator(0, 1, 7, device=CUDA)
        ctx = torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext()
        with ctx:
            tg = objective.targets(model, x1, y, gen)
            loss, _ = objective.loss(model, tg)
        results[name] = (tg, loss.float())
    (tg32, loss32), (tg16, loss16) = results["fp32"], results["bf16"]
    torch.testing.assert_close(tg16.x_t, tg32.x_t)  # same draws: identical inputs
    nb = int((tg32.kind == 0).sum())  # the self-consistency rows
    err = (tg16.v[:nb] - tg32.v[:nb]).norm() / tg32.v[:nb].norm()
    assert err < 2e-2, f"bf16 teacher targets differ from fp32 by {err:.3g} (relative)"
    assert abs(loss16.item() - loss32.item()) / loss32.item() < 2e-2


def test_flash_attention_runs_the_dit():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = random_head(DiT.from_preset("DiT-B/2", input_size=32, in_channels=4)).to(CUDA).eval()
    x = torch.randn(8, 4, 32, 32, device=CUDA)
    t, d = torch.rand(8, device=CUDA), torch.full((8,), 0.25, device=CUDA)
    y = torch.zeros(8, dtype=torch.long, device=CUDA)  # the null label of an unconditional model
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # raises if flash attention cannot run these inputs
            flash = model(x, t, d, y)
        with sdpa_kernel(SDPBackend.MATH):
            math = model(x, t, d, y)
    torch.testing.assert_close(flash.float(), math.float(), atol=3e-2, rtol=3e-2)


def test_compiled_model_gives_the_eager_samples_and_losses(tmp_path):
    model = random_head(DiT.from_preset("DiT-Digits", input_size=8, in_channels=1, num_classes=10)).to(CUDA).eval()
    compiled = torch.compile(model)
    noise = torch.randn(64, 1, 8, 8, device=CUDA)
    y = torch.arange(64, device=CUDA) % 10
    for steps in (1, 4):
        torch.testing.assert_close(
            sample(compiled, noise, steps, y), sample(model, noise, steps, y), atol=1e-3, rtol=1e-3
        )
    losses = {}
    for flag in ("false", "true"):
        trainer = digits_trainer(tmp_path / flag, "shortcut", f"compile={flag}", "precision=fp32")
        losses[flag] = torch.stack([trainer.train_step(step)["loss"] for step in range(3)]).cpu()
    torch.testing.assert_close(losses["true"], losses["false"], atol=1e-4, rtol=1e-3)


def test_train_resume_and_eval_on_gpu_through_the_cli(tmp_path):
    run = tmp_path / "run"
    base = [sys.executable, "-m", "shortcut_models"]
    train = [
        *base,
        "train",
        "--out",
        str(run),
        "--quiet",
        "device=cuda",
        "ckpt_every=20",
        "log_every=10",
        "sample_every=0",
        "logger=none",
    ]
    subprocess.run([*train, "steps=20"], check=True)
    subprocess.run([*train, "steps=40"], check=True)  # resumes at step 20
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [10, 20, 30, 40]
    subprocess.run(
        [
            *base,
            "eval",
            "--ckpt",
            str(run),
            "--steps",
            "1,4",
            "--num",
            "200",
            "--device",
            "cuda",
            "--quiet",
            "--out",
            str(tmp_path / "eval"),
        ],
        check=True,
    )
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    values = [r["fd_digits"] for r in result["rows"]]
    assert len(values) == 2 and all(v == v and v > 0 for v in values)
