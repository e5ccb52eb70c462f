"""Tiny runs exported with `shortcut export --format diffusers`, shared by the tests of this folder.

The runs are DiT-Nano, two training steps; their EMA weights are then moved by random ones (every tensor
but the fixed position table), so that the output moves with x, t, d, the label and the guidance.
"""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from shortcut_models import checkpoints as ckpt
from shortcut_models.cli import main
from shortcut_models.config import build_config
from shortcut_models.experiments import train
from shortcut_models.training import Trainer

pytest.importorskip("diffusers")

NANO = ["model=DiT-Nano", "batch_size=16", "steps=2", "logger=none", "sample_steps=[1]", "warmup_steps=0"]


def randomize(run, seed=0) -> None:
    """Move the sampling (EMA) weights of a run's checkpoint by random ones of scale 0.1 (the samples then
    depend on label and step count by about 0.16 on average, in a range of about [-4, 4])."""
    file = ckpt.latest_checkpoint(run) / ckpt.EMA_WEIGHTS
    g = torch.Generator().manual_seed(seed)
    tensors = {
        k: v if k.endswith("pos_embed") else v + 0.1 * torch.randn(v.shape, generator=g)
        for k, v in load_file(str(file)).items()
    }
    save_file(tensors, str(file))


def export(run, out, *extra):
    assert main(["export", "--format", "diffusers", "--ckpt", str(run), "--out", str(out), "--quiet", *extra]) == 0
    return out


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """{objective: (run, exported folder)} of digits runs: shortcut (evaluated during training at 1, 2, 4 and
    128 steps), flow matching (its step-size input held at 1/128) and iMF (guidance as a network input)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is fastest
    try:
        root = tmp_path_factory.mktemp("runs")
        cfg = build_config("digits", "shortcut", None, [*NANO, "eval_steps=[1,2,4,128]", "eval_num=20"])
        train(cfg, root / "shortcut", progress=False)
        for objective in ("flow", "imf"):
            cfg = build_config("digits", objective, None, [*NANO, "eval_every=0"])
            Trainer(cfg, root / objective, progress=False).run()
        out = {}
        for i, objective in enumerate(("shortcut", "flow", "imf")):
            randomize(root / objective, seed=i)
            out[objective] = (root / objective, export(root / objective, root / f"{objective}-diffusers"))
        return out
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def latent_run(tmp_path_factory, vae_dir, png):
    """(run, exported folder) of an unconditional shortcut run on the 4x16x16 latents of the tiny local VAE
    (tests/fixtures/images.py's vae_dir), exported with its VAE."""
    from shortcut_models.autoencoders import StableDiffusionVAE
    from shortcut_models.data.latents import encode_folder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("latent")
        rng = np.random.default_rng(0)
        for i in range(4):
            png(root / "images" / f"{i}.png", rng, size=(32, 32))
        vae = StableDiffusionVAE(str(vae_dir))
        encode_folder(root / "images", root / "cache", vae, resolution=32, batch_size=4, progress=False)
        overrides = [*NANO, "batch_size=8", "eval_every=0", f"data=latents:{root / 'cache'}", "class_conditional=false"]
        Trainer(build_config("digits", "shortcut", None, overrides), root / "run", progress=False).run()
        randomize(root / "run")
        return root / "run", export(root / "run", root / "exported")
    finally:
        torch.set_num_threads(threads)
