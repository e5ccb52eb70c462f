"""Every Python block of README.md runs, so the README cannot drift from the code.

Documented substitution (README "Python" says so too): where the README uses sizes meant for a GPU or
for minutes of training, the test runs the same code smaller. Each key must occur in the README, so
the table cannot silently go stale.
"""

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
SUBSTITUTIONS = {
    '"DiT-B/2"': '"DiT-Nano"',  # a GPU-sized network -> the 2-block test network
    "steps=4000": "steps=2, sample_steps=[1], eval_num=50",  # 4,000 steps -> 2, one sheet, small evaluation
}


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_blocks_and_every_substitution_applies():
    blocks = python_blocks()
    assert len(blocks) >= 2
    text = "".join(blocks)
    for old in SUBSTITUTIONS:
        assert old in text, f"{old!r} is no longer in the README's Python blocks: update SUBSTITUTIONS"


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks that write runs/ write them here
    code = python_blocks()[index]
    for old, new in SUBSTITUTIONS.items():
        code = code.replace(old, new)
    namespace: dict = {"__name__": "__readme__"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: one thread is fastest
    try:
        exec(compile(code, f"README.md python block {index + 1}", "exec"), namespace)  # noqa: S102 - our own README
    finally:
        torch.set_num_threads(threads)  # later tests run at the thread count they were started with
    for name, value in namespace.items():  # whatever the block computed is finite
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            assert torch.isfinite(value).all(), name
