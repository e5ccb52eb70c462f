"""The one learning test: on the checkerboard, with one budget, shortcut beats flow matching at 1 step
and matches it at 128 steps (sliced Wasserstein distance to fresh data)."""

import pytest

from shortcut_models.config import build_config
from shortcut_models.evaluation import evaluate_toy
from shortcut_models.inference import load_model
from shortcut_models.training import Trainer

BUDGET = ["steps=1200", "log_every=400", "ckpt_every=1200", "logger=none", "sample_steps=[1]"]  # one small sheet


@pytest.mark.slow
def test_shortcut_beats_flow_at_one_step_and_matches_at_128(tmp_path):
    swd = {}
    for objective in ("shortcut", "flow"):
        out = tmp_path / objective
        Trainer(build_config("checkerboard", objective, None, BUDGET), out, progress=False).run()
        rows = evaluate_toy(load_model(out, "cpu"), [1, 128], num=2000, progress=False)
        swd[objective] = {r["steps"]: r["swd"] for r in rows}
        floor = rows[0]["swd_floor"]
    print(swd, floor)
    # one step: flow matching averages the modes (swd ~1), the shortcut model does not
    assert swd["shortcut"][1] < 0.4 * swd["flow"][1]
    # 128 steps: both integrate the same flow; within 50% of each other and well below the 1-step flow
    lo, hi = sorted([swd["shortcut"][128], swd["flow"][128]])
    assert hi < 1.5 * lo + floor
    assert swd["flow"][128] < 0.3 * swd["flow"][1]
