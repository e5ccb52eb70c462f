"""Training throughput of the library against a straightforward training loop, as a first reimplementation writes it.

Both sides train the same network (default DiT-B/2, unconditional, on 256x256 images as 4x32x32
latents) with the same shortcut objective (one self-consistency row in 8, EMA teacher) and batch; their
steps are timed alternately in one process and the median per-round speed-up is printed. A second
reference row reads cached latents instead of encoding, to separate the cache from the other fast paths.

The reference loop (``ReferenceLoop`` below): float32 everywhere (no autocast, no TF32 matmuls); the
images of every batch go through the VAE encoder; the EMA copy made with ``copy.deepcopy`` keeps
``requires_grad`` and the teacher is called without ``no_grad``/``inference_mode`` (so its two passes
record autograd graphs that are thrown away); the default AdamW; a Python loop over parameters for
the EMA. The library: the latent cache (encoded once; stood in for by ``data=synthetic:...``, which
draws a batch of the same size per step), bf16 autocast and TF32 on CUDA, targets under ``no_grad``,
fused AdamW, a foreach EMA, and optionally ``torch.compile``. Goal on a GPU: >= 2x.

    python benchmarks/reference_loop.py                          # GPU: DiT-B/2, batch 64, 256x256 images
    python benchmarks/reference_loop.py --model DiT-Nano --resolution 32 --batch 8 --repeats 3   # CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import tempfile
from pathlib import Path

import torch
from _common import describe, interleaved, median_ratio, random_sd_vae, setup

from shortcut_models.config import build_config
from shortcut_models.models import build_model
from shortcut_models.objectives.shortcut import level_strata
from shortcut_models.training import Trainer


@contextlib.contextmanager
def plain_fp32():
    """No TF32 in matmuls and convolutions while the reference step runs."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class ReferenceLoop:
    """A shortcut training step as a plain first implementation writes it (see the module docstring)."""

    def __init__(
        self, model: torch.nn.Module, vae, batch: int, resolution: int, device: torch.device, encode: bool = True
    ) -> None:
        self.model, self.vae, self.batch, self.device, self.encode = model, vae, batch, device, encode
        self.ema = copy.deepcopy(model)  # parameters still require grad
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
        self.images = torch.rand(batch, 3, resolution, resolution) * 2 - 1  # a CPU batch, like a DataLoader's
        self.latents = torch.randn(batch, 4, resolution // 8, resolution // 8)
        self.nb = batch // 8
        self.levels = level_strata(self.nb, 7).to(device)

    def step(self) -> float:
        with plain_fp32():
            if self.encode:
                images = self.images.to(self.device)
                with torch.no_grad():
                    x1 = self.vae.vae.encode(images).latent_dist.sample() * self.vae.scaling_factor
            else:  # the same loop reading cached latents (isolates the other fast paths)
                x1 = self.latents.to(self.device)
            b, nb = x1.shape[0], self.nb
            x0 = torch.randn_like(x1)
            t = torch.randint(0, 128, (b,), device=self.device).float() / 128
            d = torch.full((b,), 1 / 128, device=self.device)
            y = torch.zeros(b, dtype=torch.long, device=self.device)
            x_t = (1 - (1 - 1e-5) * t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * x1
            v = x1 - (1 - 1e-5) * x0
            # self-consistency rows: the teacher is called without no_grad (graphs are recorded, then dropped)
            db = torch.pow(2.0, -self.levels.float())
            tb = (torch.rand(nb, device=self.device) / db).floor() * db
            xb = (1 - (1 - 1e-5) * tb.view(-1, 1, 1, 1)) * x0[:nb] + tb.view(-1, 1, 1, 1) * x1[:nb]
            v1 = self.ema(xb, tb, db / 2, y[:nb])
            x_mid = (xb + (db / 2).view(-1, 1, 1, 1) * v1).clamp(-4, 4)
            v2 = self.ema(x_mid, tb + db / 2, db / 2, y[:nb])
            target = ((v1 + v2) / 2).clamp(-4, 4).detach()
            x_t, t, d, v = x_t.clone(), t.clone(), d.clone(), v.clone()
            x_t[:nb], t[:nb], d[:nb], v[:nb] = xb, tb, db, target
            loss = ((self.model(x_t, t, d, y) - v) ** 2).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            with torch.no_grad():
                for pe, p in zip(self.ema.parameters(), self.model.parameters()):
                    pe.mul_(0.999).add_(p, alpha=0.001)
            return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="DiT-B/2")
    parser.add_argument("--resolution", type=int, default=256, help="image size; latents are 4 x size/8 x size/8")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="also time the library with compile=true")
    args = parser.parse_args()
    device = setup()
    side = args.resolution // 8
    with tempfile.TemporaryDirectory() as tmp:
        vae = random_sd_vae(Path(tmp) / "sd-vae", device)
        torch.manual_seed(0)
        references = {
            name: ReferenceLoop(
                build_model(args.model, (4, side, side), 0, {}).to(device),
                vae,
                args.batch,
                args.resolution,
                device,
                encode=encode,
            )
            for name, encode in (("reference", True), ("reference, cache", False))
        }
        runs = {}
        for compiled in [False, True] if args.compile else [False]:
            cfg = build_config(
                "celebahq256",
                "shortcut",
                None,
                [
                    f"model={args.model}",
                    f"data=synthetic:4x{side}x{side}",
                    f"batch_size={args.batch}",
                    f"compile={str(compiled).lower()}",
                    "logger=none",
                ],
            )
            runs["library" + (" compiled" if compiled else "")] = Trainer(cfg, f"{tmp}/run-{compiled}", progress=False)
        counter = dict.fromkeys(runs, 0)

        def library_step(name):
            runs[name].train_step(counter[name])
            counter[name] += 1

        fns = {
            **{name: ref.step for name, ref in references.items()},
            **{name: (lambda n=name: library_step(n)) for name in runs},
        }
        times = interleaved(fns, args.repeats, device, warmup=3)
    print(describe(device))
    print(
        f"{args.model}, batch {args.batch}, {args.resolution}x{args.resolution} images -> 4x{side}x{side} latents, "
        f"{args.repeats} rounds (steps alternated)"
    )
    ref = statistics.median(times["reference"])
    print(f"{'loop':>18} {'ms/step':>9} {'img/s':>9} {'speed-up':>9}")
    print(f"{'reference':>18} {1e3 * ref:>9.1f} {args.batch / ref:>9.1f} {1.0:>9.2f}")
    for name in [*list(references)[1:], *runs]:
        mine = statistics.median(times[name])
        print(
            f"{name:>18} {1e3 * mine:>9.1f} {args.batch / mine:>9.1f} {median_ratio(times['reference'], times[name]):>9.2f}"
        )


if __name__ == "__main__":
    main()
