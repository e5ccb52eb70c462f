"""A LatentSource needs memory of the order of a batch, not of the cache: peak RSS hardly grows with N."""

import subprocess
import sys
import textwrap

import pytest

from shortcut_models.data.latents import write_random_cache

# Run in a fresh interpreter so that its peak RSS (VmHWM) holds only this source's reads.
READ_BATCHES = textwrap.dedent("""
    import sys
    from pathlib import Path
    from shortcut_models.data.latents import LatentSource

    source = LatentSource(sys.argv[1])
    for step in range(20):
        source.batch(step, 64, seed=0)
    status = Path("/proc/self/status").read_text().splitlines()
    print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")))  # kB
""")


def _peak_rss_mb(cache) -> float:
    out = subprocess.run([sys.executable, "-c", READ_BATCHES, str(cache)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


@pytest.mark.slow  # two fresh processes
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc/self/status")
def test_peak_rss_does_not_grow_with_the_cache(tmp_path):
    # 2,000 vs 20,000 images (4,000 vs 40,000 entries) of latent shape 4x16x16: the large cache holds
    # 158 MB of float16 mean/std. Measured peak RSS (2-core VM, torch 2.13 CPU): 240.4 MB vs 240.8 MB
    # when rows are read from the shards on demand; 255.9 MB vs 400.4 MB (+145 MB) when the whole
    # cache was loaded into memory, as LatentSource did before.
    small, large = tmp_path / "small", tmp_path / "large"
    write_random_cache(small, 2_000, latent_shape=(4, 16, 16))
    write_random_cache(large, 20_000, latent_shape=(4, 16, 16))
    grown = _peak_rss_mb(large) - _peak_rss_mb(small)
    assert grown < 50, f"peak RSS grew by {grown:.1f} MB from 2,000 to 20,000 images"
