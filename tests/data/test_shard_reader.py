"""ShardReader: rows of safetensors files read with pread, against safetensors' own loader."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from shortcut_models.data.shard_reader import ShardError, ShardReader


@pytest.fixture
def shards(tmp_path):
    counts = [3, 0, 5, 1, 4]
    paths = []
    gen = torch.Generator().manual_seed(0)
    for k, n in enumerate(counts):
        paths.append(tmp_path / f"s{k}.safetensors")
        save_file(
            {"x": torch.randn(n, 2, 3, generator=gen).half(), "y": torch.arange(n, dtype=torch.int64) + 100 * k},
            str(paths[-1]),
            metadata={"note": "ignored"},
        )
    return paths, counts


def test_rows_and_columns_equal_the_loaded_files(shards):
    paths, counts = shards
    reader = ShardReader(paths, counts, {"x": ("F16", (2, 3)), "y": ("I64", ())}, max_open=2)
    whole = {key: torch.cat([load_file(str(p))[key] for p in paths]) for key in ("x", "y")}
    assert reader.num_rows == 13
    assert torch.equal(reader.column("x"), whole["x"]) and torch.equal(reader.column("y"), whole["y"])
    idx = torch.tensor([12, 0, 3, 3, 8, 7, 2, 12, 9])
    assert torch.equal(reader.rows("x", idx), whole["x"][idx]) and torch.equal(reader.rows("y", idx), whole["y"][idx])
    assert len(reader._open) <= 2  # least recently used descriptors are closed
    assert reader.rows("x", torch.tensor([], dtype=torch.int64)).shape == (0, 2, 3)
    with pytest.raises(IndexError):
        reader.rows("x", torch.tensor([13]))
    with pytest.raises(ShardError, match="s0.safetensors: x has dtype F16, expected F32"):
        ShardReader(paths, counts, {"x": ("F32", (2, 3))})
    with pytest.raises(ShardError, match="s2.safetensors: no tensor 'z'"):
        ShardReader(paths[2:], counts[2:], {"z": ("F16", ())})
