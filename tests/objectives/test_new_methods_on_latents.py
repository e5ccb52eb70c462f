"""Every objective added with issue 22 trains on a latent cache and samples in one step through the VAE.

A tiny latent run (four 32x32 images encoded by the tiny random VAE of tests/fixtures/images.py): two training
steps, then ``shortcut sample --steps 1`` decodes images (uint8 pixels). Each image must vary and two
seeds must give different images, so a run that silently produced a constant image fails.
"""

import numpy as np
import pytest

from shortcut_models.cli import main

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("objective", ["esc", "imf", "imm", "sct"])
def test_trains_on_latents_and_samples_in_one_step(objective, tiny_latents, tmp_path, capsys):
    _, cache = tiny_latents
    run = tmp_path / "run"
    args = [f"data=latents:{cache}", "model=DiT-Nano", "batch_size=8", "steps=2", "sample_steps=[1]"]
    args += ["eval_every=0", "logger=none", "class_conditional=false"]
    assert main(["train", "--objective", objective, "--out", str(run), "--quiet", *args]) == 0, capsys.readouterr().err
    images = []
    for seed in (1, 2):
        out = tmp_path / f"s{seed}.npz"
        assert (
            main(["sample", "--ckpt", str(run), "--steps", "1", "--num", "2", "--seed", str(seed), "--out", str(out)])
            == 0
        )
        images.append(np.load(out)["arr_0"])
    assert images[0].shape == (2, 32, 32, 3) and images[0].dtype == np.uint8
    for x in images:
        assert all(img.std() > 1 for img in x)  # not a constant image
    assert not np.array_equal(images[0], images[1])
