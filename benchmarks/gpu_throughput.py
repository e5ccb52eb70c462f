"""Training and sampling throughput of DiT-B/2 and DiT-XL/2 on 256x256 latents (4x32x32), bf16.

Training: the library's Trainer (shortcut objective, ImageNet recipe: class-conditional, label
dropout, guided teacher at the finest self-consistency level) on synthetic latents
(``data=synthetic:4x32x32:1000``, generated per step like a latent-cache batch), with and without
``torch.compile``; images/s over timed steps after warm-up, the first step's time (compilation), and
peak GPU memory. Sampling: 1-step generation including the VAE decode to 256x256 images (Stable
Diffusion's VAE architecture with random weights; decode in bf16 autocast and in fp32).

    python benchmarks/gpu_throughput.py                              # the GPU table (see benchmarks/RESULTS.md)
    python benchmarks/gpu_throughput.py --models DiT-Nano --batches 8 --compile off --no-sampling   # CPU smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import torch
from _common import describe, random_sd_vae, setup, sync, timed

from shortcut_models.config import build_config
from shortcut_models.models import build_model
from shortcut_models.sampling import sample
from shortcut_models.training import Trainer


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch._dynamo.reset()


def train_case(model: str, batch: int, compiled: bool, steps: int, warmup: int, objective: str, tmp: str) -> dict:
    """One configuration; a batch that does not fit in GPU memory is retried with gradient accumulation
    (``batch_per_gpu`` = batch / 2, / 4, ...: the same global batch and gradients, in row blocks)."""
    per_gpu = batch
    while True:
        try:
            return _train_case(model, batch, per_gpu, compiled, steps, warmup, objective, tmp)
        except torch.OutOfMemoryError:
            pass
        release()  # outside the except block: the failed trainer's frames are gone
        if per_gpu <= 8:
            raise RuntimeError(f"{model} does not fit even at {per_gpu} rows per pass")
        per_gpu //= 2


def _train_case(
    model: str, batch: int, per_gpu: int, compiled: bool, steps: int, warmup: int, objective: str, tmp: str
) -> dict:
    cfg = build_config(
        "imagenet256",
        objective,
        None,
        [
            f"model={model}",
            "data=synthetic:4x32x32:1000",
            f"batch_size={batch}",
            f"compile={str(compiled).lower()}",
            "logger=none",
            *([f"batch_per_gpu={per_gpu}"] if per_gpu < batch else []),
        ],
    )
    trainer = Trainer(cfg, f"{tmp}/{model.replace('/', '_')}-{batch}-{compiled}", progress=False)
    device = trainer.device
    first = timed(lambda: trainer.train_step(0), device)
    for step in range(1, warmup):
        trainer.train_step(step)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = timed(lambda: [trainer.train_step(warmup + i) for i in range(steps)], device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    params = sum(p.numel() for p in trainer.model.parameters()) / 1e6
    trainer = None  # free the GPU memory before the next case
    release()
    return {
        "kind": "train",
        "model": model,
        "params_m": params,
        "batch": batch,
        "rows_per_pass": per_gpu,
        "compile": compiled,
        "objective": objective,
        "images_per_s": batch * steps / seconds,
        "step_ms": 1e3 * seconds / steps,
        "first_step_s": first,
        "peak_gb": peak,
    }


def sampling_case(model_name: str, batch: int, vae, device: torch.device, repeats: int) -> list[dict]:
    model = build_model(model_name, (4, 32, 32), 1000, {}).to(device).eval()
    noise = torch.randn(batch, 4, 32, 32, device=device)
    y = torch.arange(batch, device=device) % 1000
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def generate():
        with amp:
            return sample(model, noise, 1, y)

    def decode(latents, chunk=64):
        return [vae.decode(latents[i : i + chunk]) for i in range(0, latents.shape[0], chunk)]

    rows = []
    for decode_amp in (True, False):
        vae.decode_amp = decode_amp
        generate(), decode(generate())  # warm-up
        net = min(timed(generate, device) for _ in range(repeats))
        latents = generate()
        dec = min(timed(lambda z=latents: decode(z), device) for _ in range(repeats))
        rows.append(
            {
                "kind": "sample",
                "model": model_name,
                "batch": batch,
                "steps": 1,
                "decode": "bf16" if decode_amp else "fp32",
                "net_images_per_s": batch / net,
                "images_per_s_with_decode": batch / (net + dec),
                "decode_ms": 1e3 * dec,
                "peak_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan"),
            }
        )
    model = None
    release()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="DiT-B/2,DiT-XL/2")
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both")
    parser.add_argument(
        "--compile-batches", default="256", help="batches also run compiled (compilation takes minutes)"
    )
    parser.add_argument("--compile-models", help="models also run compiled (default: all of --models)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--objective", default="shortcut", choices=["shortcut", "flow"])
    parser.add_argument("--no-sampling", action="store_true")
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--sample-batch", type=int, default=256)
    parser.add_argument("--json", help="append each result as a JSON line to this file")
    args = parser.parse_args()
    device = setup()
    print(describe(device), flush=True)
    models = args.models.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    compile_batches = {int(b) for b in args.compile_batches.split(",")}
    compile_models = args.compile_models.split(",") if args.compile_models else models
    flags = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    results = []

    def emit(row: dict) -> None:
        results.append(row)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        if row["kind"] == "train":
            print(
                f"train  {row['model']:>9} ({row['params_m']:.1f}M) batch {row['batch']:>4} "
                f"{'compiled' if row['compile'] else 'eager   '}{'' if row['rows_per_pass'] == row['batch'] else ' (accum, ' + str(row['rows_per_pass']) + ' rows/pass)'} {row['images_per_s']:>9.1f} img/s "
                f"{row['step_ms']:>8.1f} ms/step  first step {row['first_step_s']:>6.1f} s  peak {row['peak_gb']:.2f} GiB",
                flush=True,
            )
        else:
            print(
                f"sample {row['model']:>9} batch {row['batch']:>4} 1 step: network {row['net_images_per_s']:>9.1f} img/s, "
                f"with {row['decode']} VAE decode {row['images_per_s_with_decode']:>8.1f} img/s "
                f"(decode {row['decode_ms']:.0f} ms)  peak {row['peak_gb']:.2f} GiB",
                flush=True,
            )

    def train_cases(compiled: bool) -> None:
        for model in models:
            for batch in batches:
                if compiled and (batch not in compile_batches or model not in compile_models):
                    continue
                t0 = time.perf_counter()
                emit(train_case(model, batch, compiled, args.steps, args.warmup, args.objective, tmp))
                sync(device)
                print(f"  (case took {time.perf_counter() - t0:.0f} s)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:  # eager, then sampling, then the slow compiled cases
        if False in flags and not args.no_training:
            train_cases(False)
        if not args.no_sampling:
            vae = random_sd_vae(Path(tmp) / "sd-vae", device)
            for model in models:
                for row in sampling_case(model, args.sample_batch, vae, device, repeats=2):
                    emit(row)
            del vae
            release()
        if True in flags and not args.no_training:
            train_cases(True)


if __name__ == "__main__":
    main()
