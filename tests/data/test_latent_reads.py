"""LatentSource reads mean/std rows from the shard files on demand: same batches as the cache held in
memory, uneven shards, batch_rows, fork and pickle, and damaged shards as one-line UserErrors."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from shortcut_models import seeding
from shortcut_models.data import TensorSource
from shortcut_models.data.latents import LatentSource, write_random_cache
from shortcut_models.errors import UserError

SHAPE = (4, 3, 3)


def _in_memory(cache: Path) -> dict[str, torch.Tensor]:
    """The whole cache loaded with safetensors' own reader, shards concatenated in manifest order."""
    manifest = json.loads((cache / "manifest.json").read_text())
    shards = [load_file(str(cache / s["file"])) for s in manifest["shards"]]
    return {key: torch.cat([t[key] for t in shards]) for key in ("mean", "std", "label", "flip", "index")}


def _reference_batch(ref: dict, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch as the in-memory LatentSource made it: TensorSource order, eps from (seed, data, step, 1)."""
    idx = TensorSource("ref", ref["mean"], ref["label"], 0).indices(step, batch_size, seed)
    eps = torch.randn(
        batch_size, *ref["mean"].shape[1:], generator=seeding.generator(seed, seeding.STREAMS["data"], step, 1)
    )
    return ref["mean"][idx].float() + ref["std"][idx].float() * eps, ref["label"][idx]


@pytest.fixture(scope="module")
def uneven(tmp_path_factory) -> Path:
    """17 files in shards of 4, seven of them unreadable: shards of 8, 2, 8, 0 and 2 entries."""
    cache = tmp_path_factory.mktemp("uneven") / "cache"
    write_random_cache(
        cache, 17, latent_shape=SHAPE, shard_size=4, num_classes=3, skip=[4, 6, 7, 12, 13, 14, 15], seed=1
    )
    return cache


def test_uneven_shards_match_the_in_memory_cache(uneven):
    """Exact on any machine: both sides read the same float16 rows and draw the same noise with the same call
    (shape and generator) in this process, then apply the same element-wise mean + std * eps."""
    manifest = json.loads((uneven / "manifest.json").read_text())
    assert [s["entries"] for s in manifest["shards"]] == [8, 2, 8, 0, 2] and manifest["num_entries"] == 20
    ref = _in_memory(uneven)
    src = LatentSource(uneven)
    assert src.num_entries == 20 and src.shape == SHAPE and src.num_classes == 3
    for key in ("label", "flip", "index"):
        assert torch.equal(getattr(src, key), ref[key])
    mean, std = src.posterior(torch.arange(20).flip(0))
    assert torch.equal(mean, ref["mean"].flip(0)) and torch.equal(std, ref["std"].flip(0))
    for step, batch_size in [(0, 5), (1, 5), (7, 5), (0, 40), (3, 20), (11, 3)]:  # (0, 40): repeated entries
        x, y = src.batch(step, batch_size, seed=4)
        rx, ry = _reference_batch(ref, step, batch_size, seed=4)
        assert torch.equal(x, rx) and torch.equal(y, ry)
        for rows in ([0], [1, batch_size - 1], list(range(1, batch_size, 2)), []):
            rows = torch.tensor(rows, dtype=torch.int64)
            bx, by = src.batch_rows(step, batch_size, 4, rows)
            assert torch.equal(bx, rx[rows]) and torch.equal(by, ry[rows])
    order = torch.argsort(ref["flip"], stable=True)[:10]
    rx, ry = src.reference(10, seed=0)
    assert torch.equal(rx, ref["mean"][order].float()) and torch.equal(ry, ref["label"][order])


def test_batches_are_pinned(tmp_path):
    """Values of the in-memory LatentSource before reads went to disk (mean = entry + k/8, std = 1/2).

    The entries, labels and reference rows are exact on every machine (integer permutations from a seeded
    generator; float16 means read as they are). The batch values hold torch.randn's noise, whose float32
    values differ in the last bits between CPUs (its vectorised AVX2/AVX-512 sampler and its scalar one
    round differently: up to 4e-7 measured), so they are compared within 1e-5: a wrong entry moves a value
    by 1 or more, another noise stream or std by about 0.4 on average.
    """
    shards = []
    for k, (start, count) in enumerate([(0, 4), (4, 2), (6, 6)]):
        e = torch.arange(start, start + count)
        mean = (e.view(-1, 1, 1, 1) + torch.arange(8).view(1, 2, 2, 2) / 8).half()
        save_file(
            {
                "mean": mean,
                "std": torch.full((count, 2, 2, 2), 0.5).half(),
                "label": e % 3,
                "flip": (e % 2).to(torch.uint8),
                "index": e // 2,
            },
            str(tmp_path / f"s{k}.safetensors"),
        )
        shards.append({"file": f"s{k}.safetensors", "entries": count})
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "version": 1,
                "complete": True,
                "vae": "identity",
                "scaling_factor": 1.0,
                "resolution": 2,
                "latent_shape": [2, 2, 2],
                "num_classes": 3,
                "class_names": ["a", "b", "c"],
                "num_entries": 12,
                "shards": shards,
            }
        )
    )
    src = LatentSource(tmp_path)
    x, y = src.batch(2, 5, seed=3)
    assert src.indices(2, 5, seed=3).tolist() == [7, 9, 10, 3, 11] and y.tolist() == [1, 0, 1, 0, 2]
    torch.testing.assert_close(
        x[:, 0, 0, 0],
        torch.tensor([6.872661590576172, 9.57235336303711, 9.61167049407959, 4.0594987869262695, 11.423141479492188]),
        rtol=0,
        atol=1e-5,
    )
    torch.testing.assert_close(
        x[:, 1, 1, 1],
        torch.tensor([7.417508602142334, 9.744524002075195, 11.55184555053711, 3.2581968307495117, 11.385086059570312]),
        rtol=0,
        atol=1e-5,
    )
    ref, ref_y = src.reference(4, seed=0)
    assert ref[:, 0, 0, 0].tolist() == [0.0, 2.0, 4.0, 6.0] and ref_y.tolist() == [0, 2, 1, 0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_pickled_and_forked_sources_read_alike(uneven):
    src = LatentSource(uneven)
    want = src.batch(2, 6, seed=0)
    copy = pickle.loads(pickle.dumps(src))
    assert all(torch.equal(a, b) for a, b in zip(copy.batch(2, 6, seed=0), want))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the inherited descriptors are dropped and the shards reopened
        try:
            x, _ = src.batch(2, 6, seed=0)
            os.write(write, struct.pack("<?", bool(torch.equal(x, want[0])) and src._shards._pid == os.getpid()))
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == struct.pack("<?", True)
    assert torch.equal(src.batch(2, 6, seed=0)[0], want[0])  # the parent's descriptors still work
    src.close()
    assert torch.equal(src.batch(2, 6, seed=0)[0], want[0])  # reopened after close()


def _fresh_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    write_random_cache(cache, 6, latent_shape=SHAPE, shard_size=2)
    return cache


def _rewrite_header(path: Path, edit) -> None:
    """Apply ``edit`` to the parsed JSON header of a safetensors file and write it back."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    edit(header)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + length :])


def _user_error(cache: Path, shard: str) -> str:
    with pytest.raises(UserError) as info:
        LatentSource(cache)
    message = str(info.value)
    assert f"shard {shard} is missing or damaged" in message and "\n" not in message
    return message


def test_damaged_shards_are_one_line_user_errors(tmp_path):
    cache = _fresh_cache(tmp_path)
    shard = cache / "shard_00001.safetensors"
    good = shard.read_bytes()
    shard.write_bytes(good[: len(good) // 2])
    assert "truncated" in _user_error(cache, shard.name)
    shard.write_bytes(good[:5])
    assert "truncated" in _user_error(cache, shard.name)
    shard.write_bytes(struct.pack("<Q", 1 << 40) + good[8:])
    assert "truncated" in _user_error(cache, shard.name)
    shard.write_bytes(good[:8] + b"!" + good[9:])
    assert "not valid JSON" in _user_error(cache, shard.name)

    def to_bf16(header):
        header["mean"]["dtype"] = "BF16"

    shard.write_bytes(good)
    _rewrite_header(shard, to_bf16)
    assert "mean has dtype BF16, expected F16" in _user_error(cache, shard.name)

    def to_f32(header):  # a consistent F32 tensor: right size, wrong dtype
        begin, end = header["std"]["data_offsets"]
        assert end - begin == 4 * 4 * 3 * 3 * 2
        header["std"].update(dtype="F32", shape=[4, 2, 3, 3])

    shard.write_bytes(good)
    _rewrite_header(shard, to_f32)
    assert "std has dtype F32" in _user_error(cache, shard.name)

    def wrong_shape(header):
        header["label"]["shape"] = [1]

    shard.write_bytes(good)
    _rewrite_header(shard, wrong_shape)
    assert "32 bytes do not hold I64 [1]" in _user_error(cache, shard.name)
    shard.unlink()
    assert "cannot open" in _user_error(cache, shard.name)


def test_shard_damaged_after_opening(tmp_path):
    cache = _fresh_cache(tmp_path)
    src = LatentSource(cache)
    src.batch(0, 12, seed=0)
    shard = cache / "shard_00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:200])  # same inode: the open descriptor sees the short file
    with pytest.raises(UserError, match="shard shard_00002.safetensors is missing or damaged .truncated") as info:
        src.batch(0, 12, seed=0)
    assert "\n" not in str(info.value)


def test_manifest_shard_counts_must_add_up(tmp_path):
    cache = _fresh_cache(tmp_path)
    manifest = json.loads((cache / "manifest.json").read_text())
    manifest["shards"][0]["entries"] = 3
    (cache / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="manifest.json is damaged"):
        LatentSource(cache)
    manifest["num_entries"] = 11
    (cache / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        UserError, match="shard_00000.safetensors .*mean has shape \\[4, 4, 3, 3\\], expected \\[3, 4, 3, 3\\]"
    ):
        LatentSource(cache)
