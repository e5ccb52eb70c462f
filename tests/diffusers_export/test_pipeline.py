"""A run exported with `shortcut export --format diffusers` generates through diffusers what `shortcut sample` does.

The runs (conftest.py) are tiny and their weights moved at random, so that the output moves with x, t, d, the
label and the guidance: a pipeline that fed the network another time, step size or label, or stepped another
way, would give other samples. Pipeline and `shortcut sample` run the
same computation in this process, so they agree to rounding (measured: exactly).
"""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from shortcut_models.cli import main
from shortcut_models.inference import load_model

pytest.importorskip("diffusers")
from shortcut_models.diffusers import ShortcutPipeline, ShortcutScheduler  # noqa: E402

ATOL = 1e-5  # pipeline vs shortcut sample, model space and images in [-1, 1]


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample_cli(run, tmp_path, steps, num, seed, *extra):
    """The uint8 NHWC pixels `shortcut sample` writes."""
    out = tmp_path / f"s{steps}.npz"
    args = ["sample", "--ckpt", str(run), "--steps", str(steps), "--num", str(num), "--seed", str(seed)]
    assert main([*args, "--device", "cpu", "--out", str(out), *extra]) == 0
    return np.load(out)["arr_0"]


def pixels(images):
    """PIL images -> uint8 NHWC."""
    arrays = [np.asarray(im) for im in images]
    return np.stack([a[..., None] if a.ndim == 2 else a for a in arrays])


@pytest.mark.parametrize("objective", ["shortcut", "flow", "imf"])
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_the_pipeline_gives_the_images_of_shortcut_sample(runs, objective, steps, tmp_path):
    run, folder = runs[objective]
    pipe = quiet(ShortcutPipeline.from_pretrained(folder))
    labels = torch.arange(12) % 10  # shortcut sample's labels for a class-conditional model
    expected = sample_cli(run, tmp_path, steps, 12, seed=3)
    got = pipe(class_labels=labels, num_inference_steps=steps, seed=3)
    assert np.abs(pixels(got.images).astype(int) - expected.astype(int)).max() <= 1
    reference = load_model(run, "cpu").generate(12, steps, seed=3, labels=labels).clamp(-1, 1)
    images = pipe(class_labels=labels, num_inference_steps=steps, seed=3, output_type="pt").images
    torch.testing.assert_close(images * 2 - 1, reference, rtol=0, atol=ATOL)
    # the default labels are shortcut sample's: i % num_classes
    default = pipe(batch_size=12, num_inference_steps=steps, seed=3, output_type="pt").images
    assert torch.equal(default, images)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_a_latent_run_gives_the_images_of_shortcut_sample(latent_run, steps, tmp_path):
    run, folder = latent_run
    assert (folder / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    pipe = quiet(ShortcutPipeline.from_pretrained(folder))
    expected = sample_cli(run, tmp_path, steps, 3, seed=1)
    got = pixels(pipe(batch_size=3, num_inference_steps=steps, seed=1).images)
    assert got.shape == expected.shape == (3, 32, 32, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    loaded = load_model(run, "cpu")
    latents = pipe(batch_size=3, num_inference_steps=steps, seed=1, output_type="latent").images
    torch.testing.assert_close(latents, loaded.generate_indices(torch.arange(3), steps, seed=1), rtol=0, atol=ATOL)
    images = pipe(batch_size=3, num_inference_steps=steps, seed=1, output_type="np").images
    torch.testing.assert_close(
        torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1, loaded.generate(3, steps, seed=1), rtol=0, atol=ATOL
    )


@pytest.mark.parametrize("objective, scale, interval", [("shortcut", 1.5, None), ("imf", 2.0, "0.2,0.7")])
def test_guidance_as_the_model_was_trained_for_it(runs, objective, scale, interval, tmp_path):
    run, folder = runs[objective]
    pipe = quiet(ShortcutPipeline.from_pretrained(folder))
    extra = ["--cfg-scale", str(scale)] + (["--cfg-interval", interval] if interval else [])
    expected = sample_cli(run, tmp_path, 2, 10, 0, *extra)
    kwargs = {"guidance_interval": tuple(map(float, interval.split(",")))} if interval else {}
    guided = pipe(batch_size=10, num_inference_steps=2, guidance_scale=scale, seed=0, **kwargs)
    assert np.abs(pixels(guided.images).astype(int) - expected.astype(int)).max() <= 1
    unguided = pixels(pipe(batch_size=10, num_inference_steps=2, seed=0).images)
    assert not np.array_equal(unguided, expected)  # the guidance changed the samples


def test_the_step_count_changes_without_reloading(runs):
    _, folder = runs["shortcut"]
    pipe = quiet(ShortcutPipeline.from_pretrained(folder))
    fresh = {n: quiet(ShortcutPipeline.from_pretrained(folder)) for n in (1, 3, 4)}

    def latents(p, n):
        return p(batch_size=4, num_inference_steps=n, seed=0, output_type="latent").images

    results = {n: latents(pipe, n) for n in (4, 1, 3, 4)}  # one pipeline, counts changed call by call
    for n, x in results.items():
        assert torch.equal(x, latents(fresh[n], n))
    assert not torch.equal(results[1], results[4]) and not torch.equal(results[3], results[4])
    # a scheduler swapped in from its saved config is the same scheduler
    pipe.scheduler = ShortcutScheduler.from_config(pipe.scheduler.config)
    assert torch.equal(latents(pipe, 3), results[3])


def test_the_noise_of_a_generator_or_of_latents(runs):
    _, folder = runs["shortcut"]
    pipe = quiet(ShortcutPipeline.from_pretrained(folder))
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    a = pipe(batch_size=4, generator=g, output_type="latent").images
    b = pipe(batch_size=4, latents=noise, output_type="latent").images
    assert torch.equal(a, b)  # diffusers' generator noise: one draw of the whole batch
    assert not torch.equal(a, pipe(batch_size=4, seed=7, output_type="latent").images)


def test_the_folder_loads_offline_and_runs_no_code_from_it(runs, latent_run, tmp_path):
    """A fresh process with the hub offline: the folder (moved elsewhere) loads and generates; the folder holds
    no Python, model_index.json names only classes of shortcut_models and diffusers, the weights are safetensors."""
    import os
    import subprocess
    import sys

    for name, folder in (("digits", runs["shortcut"][1]), ("latent", latent_run[1])):
        moved = shutil.copytree(folder, tmp_path / name)
        files = [p.relative_to(moved).as_posix() for p in moved.rglob("*") if p.is_file()]
        assert not [f for f in files if f.endswith((".py", ".bin", ".pt", ".pkl", ".pickle"))], files
        index = json.loads((moved / "model_index.json").read_text())
        assert index["_class_name"] == "ShortcutPipeline"
        libraries = {v[0] for k, v in index.items() if not k.startswith("_") and v[0] is not None}
        assert libraries <= {"shortcut_models.diffusers.network", "shortcut_models.diffusers.scheduler", "diffusers"}
    code = (
        "import sys, numpy as np\n"
        "from shortcut_models.diffusers import ShortcutPipeline\n"
        "for name in ('digits', 'latent'):\n"
        "    pipe = ShortcutPipeline.from_pretrained(sys.argv[1] + '/' + name)\n"
        "    pipe.set_progress_bar_config(disable=True)\n"
        "    images = pipe(batch_size=2, num_inference_steps=1, seed=0).images\n"
        "    print(name, len(images), np.asarray(images[0]).shape)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["digits 2 (8, 8)", "latent 2 (32, 32, 3)"]


def test_a_folder_with_pickled_weights_only_is_refused(runs, tmp_path):
    """from_pretrained reads safetensors only: weights in a pickle file are never loaded."""
    folder = shutil.copytree(runs["shortcut"][1], tmp_path / "pickled")
    weights = folder / "network" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(weights)), folder / "network" / "diffusion_pytorch_model.bin")
    weights.unlink()
    with pytest.raises(Exception, match="safetensors"):
        ShortcutPipeline.from_pretrained(folder)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"class_labels": [3, 10]}, "class label 10 is not one of this model's classes 0..9"),
        ({"class_labels": [-1]}, "class label -1"),
        ({"num_inference_steps": 0}, "num_inference_steps must be an integer from 1 to 128"),
        ({"num_inference_steps": 129}, "num_inference_steps must be an integer from 1 to 128"),
        ({"seed": 1, "generator": torch.Generator()}, "give one of seed, generator and latents"),
        ({"class_labels": [1, 2], "batch_size": 3}, "the sample counts disagree"),
        ({"latents": torch.zeros(2, 3, 8, 8)}, r"latents must have shape \[B, 1, 8, 8\]"),
        ({"output_type": "gif"}, "output_type must be one of"),
        ({"seed": -1}, "seed must be an integer from 0"),
    ],
)
def test_bad_input_to_the_pipeline_is_a_value_error(runs, kwargs, message):
    pipe = quiet(ShortcutPipeline.from_pretrained(runs["shortcut"][1]))
    with pytest.raises(ValueError, match=message):
        pipe(**kwargs)


def test_an_unconditional_model_refuses_labels(latent_run):
    pipe = quiet(ShortcutPipeline.from_pretrained(latent_run[1]))
    with pytest.raises(ValueError, match="this model is unconditional"):
        pipe(class_labels=[0])
