"""Our MeanFlow and shortcut training steps against ESC's implementations of the same losses, same network.

ESC's code (../shared/reference/explicit-shortcut, MIT; found through SHORTCUT_REFERENCE_CODE/..) ships
PyTorch losses of MeanFlow (``loss/meanflow_loss.py``) and of shortcut models (``loss/scd_loss.py``). Each
is run here on our DiT at the study's setting (``digits-uncond``: DiT-Digits/4, batch 64) through a thin
adapter (their network signature u(z, r, t, y) in their time, t = 1 noise, is our network at
(z, 1 - t, t - r, y) with the sign of the velocity flipped; their JVP runs with the math attention kernel,
which forward-mode AD needs), followed by a backward pass and an AdamW step. Ours is a whole
``Trainer.train_step`` (data, targets, loss, backward, AdamW, EMA update, logs). Steps alternate in one
process (the order flips every round); the median of per-round ratios is printed.

Settings matched: their MeanFlow with r != t on 25% of rows (ours: interval_share 0.25), logit-normal
times and the adaptive weight (ours by default); their shortcut loss with 1/8 of the rows bootstrapped
(ratio_r_not_equal_t 0.125, ours bootstrap_every 8) and 128 steps.

    SHORTCUT_REFERENCE_CODE=../shared/reference/shortcut-models python benchmarks/peer_losses.py --repeats 20
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from shortcut_models.config import build_config
from shortcut_models.experiments.timing import interleaved_times, median_ratio, time_train_step
from shortcut_models.runtime import tune_allocator
from shortcut_models.training import Trainer


def esc_losses() -> types.ModuleType:
    """ESC's ``loss`` package (its torchvision import, used only for pictures, stubbed when absent)."""
    root = os.environ.get("SHORTCUT_REFERENCE_CODE")
    if not root:
        sys.exit("set SHORTCUT_REFERENCE_CODE (../shared/reference/shortcut-models): ESC's code lies beside it")
    if "torchvision" not in sys.modules:
        stub, utils = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")
        utils.make_grid, stub.utils = (lambda *a, **k: None), utils
        sys.modules.setdefault("torchvision", stub)
        sys.modules.setdefault("torchvision.utils", utils)
    sys.path.insert(0, str(Path(root).resolve().parent / "explicit-shortcut"))
    return importlib.import_module("loss")


class TheirSignature(nn.Module):
    """Our network called as u(z, r, t, y) in ESC's time (t = 1 noise, velocity noise - data)."""

    def __init__(self, network: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.network, self.num_classes = network, num_classes

    def forward(self, z, r, t, y=None):
        y = torch.full_like(t, self.num_classes, dtype=torch.long) if y is None else y.long()
        return -self.network(z, 1 - t, t - r, y)


def their_step(loss_fn, trainer: Trainer, images: torch.Tensor, labelled: bool):
    """One step of ESC's loss on the trainer's network: loss, backward, AdamW (no EMA, no logs)."""
    model = TheirSignature(trainer.model, trainer.spec.num_classes)
    optimizer = torch.optim.AdamW(trainer.model.parameters(), lr=trainer.cfg.lr)
    kwargs = {"y": torch.full((images.shape[0],), trainer.spec.num_classes, dtype=torch.long)} if labelled else {}

    def step(_round: int) -> float:
        t0 = time.perf_counter()
        with sdpa_kernel([SDPBackend.MATH]):
            loss, _ = loss_fn(model, model, images, kwargs)
        loss.mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    losses = esc_losses()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats}")
    pairs = {
        "meanflow": (losses.MeanFlowLoss(loss_type="adaptive", ratio_r_not_equal_t=0.25), False),
        "shortcut": (losses.SCDLoss(ratio_r_not_equal_t=0.125, total_step=128), True),
    }
    print(f"{'method':>10} {'ours ms':>9} {'ESC ms':>9} {'ours / ESC':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (loss_fn, labelled) in pairs.items():
            cfg = build_config("digits-uncond", name, None, ["logger=none", "eval_every=0"])
            ours, theirs = (Trainer(cfg, f"{tmp}/{name}-{who}", progress=False) for who in ("ours", "esc"))
            shape = (cfg.batch_size, *theirs.spec.sample_shape)
            images = torch.randn(shape, generator=torch.Generator().manual_seed(0))  # the content costs nothing
            times = interleaved_times(
                {
                    "ours": lambda i, run=ours: time_train_step(run, i),
                    "esc": their_step(loss_fn, theirs, images, labelled),
                },
                args.repeats,
            )
            print(
                f"{name:>10} {1e3 * statistics.median(times['ours']):>9.1f} {1e3 * statistics.median(times['esc']):>9.1f} "
                f"{median_ratio(times['ours'], times['esc']):>11.3f}"
            )


if __name__ == "__main__":
    main()
