"""The exported diffusers pipeline against the package's own sampler, side by side in one process.

A digits run (the default preset's DiT-Digits; trained here for ``--train-steps`` unless ``--ckpt`` names one)
is exported with ``shortcut export --format diffusers``. Then, alternately (medians over ``--repeats`` rounds):
``ShortcutPipeline(class_labels=..., num_inference_steps=1, seed=0)`` as PIL images against
``sm.load_model(run).generate`` + the uint8 pixels ``shortcut sample`` writes, and the pipeline's float output
("pt") against ``generate`` alone. It prints the largest difference between the two at 1, 2, 4 and 128 steps,
in model space and in uint8 pixels; with ``--latent`` it does the same for a small latent run (random 32x32
images through SD's VAE architecture with random weights, DiT-Nano).

    python benchmarks/diffusers_pipeline.py                    # 64 digits, 1 step
    python benchmarks/diffusers_pipeline.py --ckpt runs/digits-shortcut --latent
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import describe, interleaved, median_ratio, random_sd_vae, setup

import shortcut_models as sm
from shortcut_models.diffusers import ShortcutPipeline, export_diffusers
from shortcut_models.images import to_uint8

CHECK_STEPS = (1, 2, 4, 128)


def train_digits(out: Path, steps: int) -> Path:
    cfg = sm.build_config(
        "digits", "shortcut", None, [f"steps={steps}", "eval_every=0", "logger=none", "sample_steps=[1]"]
    )
    sm.Trainer(cfg, out, progress=False).run()
    return out


def train_latent(root: Path, steps: int, device: torch.device) -> Path:
    """A tiny unconditional latent run: 8 random 32x32 images through Stable Diffusion's VAE architecture
    with random weights (4x4x4 latents), DiT-Nano."""
    from PIL import Image

    from shortcut_models.data.latents import encode_folder

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
    encode_folder(root / "images", root / "cache", random_sd_vae(root / "vae", device), resolution=32, progress=False)
    overrides = [f"steps={steps}", "model=DiT-Nano", "batch_size=8", "eval_every=0", "logger=none", "sample_steps=[1]"]
    overrides += [f"data=latents:{root / 'cache'}", "class_conditional=false"]
    sm.Trainer(sm.build_config("digits", "shortcut", None, overrides), root / "run", progress=False).run()
    return root / "run"


def differences(loaded, pipe, num: int) -> list[tuple[int, float, int]]:
    """(steps, largest difference in model space, in uint8 pixels) between the pipeline and generate, seed 0."""
    labels = loaded.balanced_labels(num)
    kwargs = {"batch_size": num} if labels is None else {"class_labels": labels}
    out = []
    for n in CHECK_STEPS:
        ours = loaded.generate_indices(torch.arange(num), n, seed=0, labels=labels)
        latents = pipe(**kwargs, num_inference_steps=n, seed=0, output_type="latent").images
        theirs = np.stack([np.asarray(im) for im in pipe(**kwargs, num_inference_steps=n, seed=0).images])
        written = to_uint8(loaded.decode(ours).clamp(-1, 1))  # the pixels `shortcut sample` writes
        pixel = int(np.abs(theirs.reshape(written.shape).astype(int) - written.astype(int)).max())
        out.append((n, float((latents - ours).abs().max()), pixel))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="a digits run or checkpoint (default: train one here)")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--num", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--latent", action="store_true", help="also the differences of a small latent run")
    args = parser.parse_args()
    device = setup(args.threads)
    print(describe(device))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = Path(args.ckpt) if args.ckpt else train_digits(root / "digits", args.train_steps)
        export_diffusers(run, root / "exported", device=str(device), report=lambda line: None)
        loaded = sm.load_model(run, str(device), precision="fp32")
        pipe = ShortcutPipeline.from_pretrained(root / "exported").to(device)
        pipe.set_progress_bar_config(disable=True)
        labels = torch.arange(args.num) % 10
        n = args.steps
        times = interleaved(
            {
                "pipeline pil": lambda: pipe(class_labels=labels, num_inference_steps=n, seed=0),
                "generate + uint8": lambda: to_uint8(loaded.generate(args.num, n, seed=0, labels=labels).clamp(-1, 1)),
                "pipeline pt": lambda: pipe(class_labels=labels, num_inference_steps=n, seed=0, output_type="pt"),
                "generate": lambda: loaded.generate(args.num, n, seed=0, labels=labels),
            },
            args.repeats,
            device,
            warmup=3,
        )
        print(f"{args.num} digits, {n} step(s), {args.repeats} alternated rounds (medians):")
        for name, values in times.items():
            print(f"  {name:>18}: {1e3 * statistics.median(values):8.2f} ms")
        print(
            f"  pipeline pil / generate + uint8: {median_ratio(times['pipeline pil'], times['generate + uint8']):.3f}"
        )
        print(f"  pipeline pt / generate:          {median_ratio(times['pipeline pt'], times['generate']):.3f}")
        cases = [("digits", loaded, pipe)]
        if args.latent:
            latent = train_latent(root / "latent", 20, device)
            export_diffusers(latent, root / "latent-exported", device=str(device), report=lambda line: None)
            latent_pipe = ShortcutPipeline.from_pretrained(root / "latent-exported").to(device)
            latent_pipe.set_progress_bar_config(disable=True)
            cases.append(("latent", sm.load_model(latent, str(device), precision="fp32"), latent_pipe))
        for name, model, p in cases:
            for steps, model_space, pixel in differences(model, p, 16 if name == "latent" else args.num):
                print(
                    f"  {name}, {steps:>3} step(s): largest difference {model_space:.3g} (model space), {pixel} (uint8)"
                )


if __name__ == "__main__":
    main()
