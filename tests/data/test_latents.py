"""Latent cache: autoencoders, image folders, encode_folder (resume, errors) and LatentSource.

The VAE tests use a tiny randomly initialised diffusers AutoencoderKL (vae_dir, tests/fixtures/images.py) and are skipped
without diffusers.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shortcut_models.autoencoders import IdentityAutoencoder, StableDiffusionVAE, build_autoencoder, decode_in_batches
from shortcut_models.data.folder import UnreadableImage, load_image, scan_folder
from shortcut_models.data.latents import LatentSource, encode_folder
from shortcut_models.errors import UserError

RES = 32  # the image size of the tiny VAE (vae_dir, tests/fixtures/images.py) and of every image here


@pytest.fixture(scope="module")
def vae(vae_dir) -> StableDiffusionVAE:
    return StableDiffusionVAE(str(vae_dir))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, png) -> Path:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        for i in range(3):
            png(root / cls / f"img{i}.png", rng)
    (root / "cats" / "broken.png").write_bytes(b"this is not a png at all")
    return root


def _encode(image_dir, out, ae, **kw) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return encode_folder(image_dir, out, ae, resolution=RES, batch_size=2, shard_size=2, progress=False, **kw)


@pytest.fixture(scope="module")
def cache(image_dir, vae, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache") / "latents"
    with pytest.warns(UserWarning, match="broken.png"):
        encode_folder(image_dir, out, vae, resolution=RES, batch_size=2, shard_size=2, progress=False)
    return out


def test_vae_reads_scaling_factor_and_shapes(vae, vae_dir):
    assert vae.scaling_factor == pytest.approx(0.18215)
    assert vae.latent_shape((3, RES, RES)) == (4, RES // 2, RES // 2)
    assert vae.name == str(Path(vae_dir).resolve())
    x = torch.rand(2, 3, RES, RES) * 2 - 1
    mean, std = vae.encode(x)
    post = vae.vae.encode(x).latent_dist
    torch.testing.assert_close(mean, post.mean * 0.18215)
    torch.testing.assert_close(std, post.std * 0.18215)
    assert (std > 0).all()


def test_scan_folder_layouts(image_dir, tmp_path, png):
    items, classes = scan_folder(image_dir)
    assert classes == ["cats", "dogs"]
    assert [(p.relative_to(image_dir).as_posix(), y) for p, y in items] == [
        ("cats/broken.png", 0),
        ("cats/img0.png", 0),
        ("cats/img1.png", 0),
        ("cats/img2.png", 0),
        ("dogs/img0.png", 1),
        ("dogs/img1.png", 1),
        ("dogs/img2.png", 1),
    ]
    rng = np.random.default_rng(1)
    png(tmp_path / "b.PNG", rng)
    png(tmp_path / "sub" / "a.jpg", rng)
    (tmp_path / "notes.txt").write_text("x")
    png(tmp_path / ".hidden.png", rng)
    items, classes = scan_folder(tmp_path)
    assert classes == [] and [(p.name, y) for p, y in items] == [("b.PNG", 0), ("a.jpg", 0)]
    with pytest.raises(UserError, match="does not exist"):
        scan_folder(tmp_path / "nope")


def test_load_image_adm_center_crop(tmp_path, png):
    rng = np.random.default_rng(2)
    png(tmp_path / "big.png", rng, size=(150, 100))
    x = load_image(tmp_path / "big.png", RES)
    assert x.shape == (3, RES, RES) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    img = (
        Image.open(tmp_path / "big.png").convert("RGB").resize((75, 50), Image.Resampling.BOX)
    )  # 100 >= 64: halve once
    img = np.asarray(img.resize((48, 32), Image.Resampling.BICUBIC))[:, 8:40]
    torch.testing.assert_close(x, torch.from_numpy(img.astype(np.float32) / 127.5 - 1).permute(2, 0, 1))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(UnreadableImage):
        load_image(tmp_path / "bad.jpg", RES)


def test_encode_manifest_and_stored_posterior(cache, image_dir, vae):
    manifest = json.loads((cache / "manifest.json").read_text())
    assert (
        manifest["complete"]
        and manifest["num_files"] == 7
        and manifest["num_images"] == 6
        and manifest["num_entries"] == 12
    )
    assert [s["file"] for s in manifest["skipped"]] == ["cats/broken.png"] and manifest["skipped"][0]["reason"]
    assert manifest["class_names"] == ["cats", "dogs"] and manifest["num_classes"] == 2
    assert manifest["latent_shape"] == [4, 16, 16] and manifest["scaling_factor"] == pytest.approx(0.18215)
    assert sum(s["entries"] for s in manifest["shards"]) == 12 and len(manifest["shards"]) == 4
    files = (cache / "files.txt").read_text().splitlines()
    src = LatentSource(cache)
    assert src.flip.tolist() == [0, 1] * 6
    stored_mean, stored_std = src.posterior(torch.arange(12))
    for e in range(12):
        rel = files[int(src.index[e])]
        assert src.label[e] == (0 if rel.startswith("cats/") else 1)
        x = load_image(image_dir / rel, RES)[None]
        mean, std = vae.encode(x.flip(-1) if src.flip[e] else x)
        torch.testing.assert_close(stored_mean[e].float(), mean[0], atol=2e-3, rtol=2e-3)
        torch.testing.assert_close(stored_std[e].float(), std[0], atol=2e-3, rtol=2e-3)


class _Interrupting:
    """The tiny VAE, interrupted at its ``fail_at``-th encode call (like Ctrl-C mid-run)."""

    def __init__(self, vae, fail_at: int) -> None:
        self.vae, self.fail_at, self.calls = vae, fail_at, 0
        self.name, self.scaling_factor, self.latent_shape = vae.name, vae.scaling_factor, vae.latent_shape

    def encode(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.vae.encode(x)


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_interrupted_encode_resumes_to_identical_cache(cache, image_dir, vae, tmp_path):
    """Byte for byte the uninterrupted cache: the same VAE encodes the same batches of the same images in this
    process (same shapes, same thread count), a computation that repeats exactly on any machine."""
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        _encode(image_dir, out, _Interrupting(vae, fail_at=2))  # shard 0 = [broken, img0]; dies in shard 1
    assert (out / "shard_00000.safetensors").exists() and not (out / "shard_00001.safetensors").exists()
    with pytest.raises(UserError, match="unfinished"):
        LatentSource(out)
    resumer = _Interrupting(vae, fail_at=0)
    _encode(image_dir, out, resumer)
    assert resumer.calls == 3  # shards 1, 2, 3 only
    assert _files(out) == _files(cache)
    _encode(image_dir, out, _Interrupting(vae, fail_at=1))  # complete: nothing is encoded again
    assert _files(out) == _files(cache)
    with pytest.raises(UserError, match="different arguments"):
        encode_folder(image_dir, out, vae, resolution=16, shard_size=2, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        _encode(image_dir, tmp_path / "other", vae)


def test_encode_errors(tmp_path):
    vae = IdentityAutoencoder()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        _encode(tmp_path / "empty", tmp_path / "o1", vae)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="could be read.*broken.png"):
        _encode(tmp_path / "bad", tmp_path / "o2", vae)
    with pytest.raises(UserError, match="does not exist"):
        _encode(tmp_path / "missing", tmp_path / "o3", vae)
    with pytest.raises(UserError, match="no latent cache"):
        LatentSource(tmp_path / "empty")


def test_vae_load_errors(tmp_path):
    pytest.importorskip("diffusers")
    for spec, match in [(str(tmp_path / "nope"), "no such directory"), ("./nope/vae", "no such directory")]:
        with pytest.raises(UserError, match=match) as info:
            StableDiffusionVAE(spec)
        assert "\n" not in str(info.value) and "save_pretrained" in str(info.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        build_autoencoder(str(tmp_path / "file"))
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(UserError, match="cannot load VAE") as info:
        StableDiffusionVAE(str(tmp_path / "emptydir"))
    assert "\n" not in str(info.value)


def test_latent_source_batches(cache):
    src = LatentSource(cache)
    assert src.shape == (4, 16, 16) and src.num_classes == 2 and src.image_shape == (3, RES, RES)
    x, y = src.batch(3, 5, seed=7)
    assert x.shape == (5, 4, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    x2, y2 = src.batch(3, 5, seed=7)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.allclose(src.batch(4, 5, seed=7)[0], x)
    idx = src.indices(3, 5, seed=7)
    assert torch.equal(y, src.label[idx])
    # one batch of 300 epochs: every entry is drawn 300 times, each with fresh noise
    n, draws = 12, 300
    xs, ys = src.batch(0, n * draws, seed=1)
    idx = src.indices(0, n * draws, seed=1)
    assert torch.equal(torch.bincount(idx), torch.full((n,), draws)) and torch.equal(ys, src.label[idx])
    samples = torch.stack([xs[idx == e] for e in range(n)], dim=1)
    mean, std = (t.float() for t in src.posterior(torch.arange(n)))
    z = (samples.mean(0) - mean) / (std / draws**0.5)
    assert abs(z.mean().item()) < 0.1 and 0.9 < z.std().item() < 1.1
    assert (samples.std(0) / std).mean().item() == pytest.approx(1.0, abs=0.03)
    ref, ref_y = src.reference(4, seed=0)
    assert (
        ref.shape == (4, 4, 16, 16)
        and torch.equal(ref, mean[[0, 2, 4, 6]])
        and torch.equal(ref_y, src.label[[0, 2, 4, 6]])
    )


def test_decode_through_cache_vae(cache):
    src = LatentSource(cache)
    ae = src.autoencoder()
    images = decode_in_batches(ae, src.batch(0, 5, seed=0)[0], batch_size=2)
    assert images.shape == (5, 3, RES, RES) and images.min() >= -1 and images.max() <= 1


def test_identity_autoencoder_and_pixel_cache(image_dir, tmp_path):
    ae = build_autoencoder(None)
    assert isinstance(ae, IdentityAutoencoder) and build_autoencoder("identity").name == "identity"
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    mean, std = ae.encode(x)
    assert torch.equal(ae.decode(mean), x) and torch.equal(std, torch.zeros_like(x))
    assert torch.equal(ae.decode(x * 3), (x * 3).clamp(-1, 1))
    _encode(image_dir, tmp_path / "pixels", ae)
    src = LatentSource(tmp_path / "pixels")
    mean, std = src.posterior(torch.arange(src.num_entries))
    assert src.shape == (3, RES, RES) and src.autoencoder_spec == "identity" and torch.all(std == 0)
    files = (tmp_path / "pixels" / "files.txt").read_text().splitlines()
    img = load_image(image_dir / files[int(src.index[0])], RES)
    torch.testing.assert_close(mean[0].float(), img, atol=4e-3, rtol=0)
    torch.testing.assert_close(mean[1].float(), img.flip(-1), atol=4e-3, rtol=0)
    assert torch.equal(src.batch(0, 4, seed=0)[0], mean[src.indices(0, 4, seed=0)].float())


@pytest.mark.slow  # encode, train, sample, decode and FID through the command line
def test_whole_latent_path_through_the_cli(image_dir, vae_dir, tmp_path, capsys):
    """encode -> train a few steps -> sample -> decode -> eval (FID with local random Inception weights)."""
    from shortcut_models.cli import main

    cache_dir, run = tmp_path / "cache", tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (
            main(
                [
                    "encode",
                    "--data",
                    str(image_dir),
                    "--vae",
                    str(vae_dir),
                    "--resolution",
                    str(RES),
                    "--out",
                    str(cache_dir),
                    "--batch-size",
                    "2",
                    "--quiet",
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
    assert "1 unreadable skipped" in capsys.readouterr().out
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "--quiet",
                f"data=latents:{cache_dir}",
                "eval_every=0",
                "model=DiT-Nano",
                "batch_size=8",
                "steps=2",
                "log_every=1",
                "logger=none",
                "sample_steps=[1]",
                "class_conditional=true",
            ]
        )
        == 0
    )
    sheet = next((run / "samples").glob("step_*/steps_001.png"))
    assert sheet.stat().st_size > 0
    assert main(["sample", "--ckpt", str(run), "--steps", "2", "--num", "3", "--out", str(tmp_path / "s.npz")]) == 0
    samples = np.load(tmp_path / "s.npz")
    assert samples["arr_0"].shape == (3, RES, RES, 3) and samples["arr_0"].dtype == np.uint8  # decoded images
    assert samples["labels"].tolist() == [0, 1, 0]
    from shortcut_models.metrics.inception import InceptionFeatures

    try:
        net = InceptionFeatures(weights="random")
    except ImportError:
        pytest.skip("torch-fidelity is not installed")
    weights = tmp_path / "inception.pth"
    torch.save(net.network.state_dict(), weights)
    ref = tmp_path / "ref.npz"
    assert (
        main(
            [
                "ref-stats",
                "--data",
                str(image_dir),
                "--resolution",
                str(RES),
                "--inception-weights",
                str(weights),
                "--out",
                str(ref),
                "--quiet",
            ]
        )
        == 0
    )
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--ckpt",
                str(run),
                "--steps",
                "1",
                "--num",
                "4",
                "--ref-stats",
                str(ref),
                "--inception-weights",
                str(weights),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    row = json.loads((out / "metrics.json").read_text())["rows"][0]
    assert row["fid"] > 0 and row["num"] == 4
