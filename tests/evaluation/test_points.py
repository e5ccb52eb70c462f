"""Scoring a 2-D model against its known density (evaluation/points.py): the floor, the reference's
freshness, untrained against briefly trained, determinism."""

import pytest
import torch

from shortcut_models.config import build_config
from shortcut_models.data import build_source, on_checkerboard
from shortcut_models.errors import UserError
from shortcut_models.evaluation.points import REFERENCE_SEED, evaluate_points, reference_points
from shortcut_models.inference import load_model
from shortcut_models.metrics.swd import sliced_wasserstein
from shortcut_models.training import Trainer


def flow_run(out, steps: int, batch: int = 64):
    args = [f"steps={steps}", f"batch_size={batch}", "eval_every=0", "logger=none", "sample_steps=[1]"]
    Trainer(build_config("checkerboard", "flow", None, args), out, progress=False).run()
    return load_model(out, "cpu")


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, one_thread):
    """One step from a zero output layer: the network is still ~0, its samples are ~ the noise (one thread,
    restored after this module)."""
    return flow_run(tmp_path_factory.mktemp("untrained"), steps=1)


def test_reference_is_fresh_checkerboard_data_and_the_floor_is_two_fresh_sets():
    ref, other = reference_points("checkerboard", 1000)
    assert ref.shape == other.shape == (1000, 2)
    assert on_checkerboard(ref).all() and on_checkerboard(other).all()
    # not the training points: the trainer's batches (seed 0, first steps) share none of them. Compared
    # coordinate by coordinate, exactly: torch.cdist's matrix-product form rounds the distance of distinct
    # points closer than ~1e-3 to 0 on some CPUs (the nearest pair here is 4.8e-4 apart)
    source = build_source("checkerboard")
    seen = torch.cat([source.batch(step, 256, seed=0)[0] for step in range(20)])
    assert not (ref[:, None, :] == seen[None, :, :]).all(dim=2).any()
    # the floor of two fresh sets is small against the board (side 4), and a second pair agrees
    floor = sliced_wasserstein(ref, other)
    again = sliced_wasserstein(*reference_points("checkerboard", 1000, REFERENCE_SEED + 1))
    assert 0 < floor < 0.15 and 0 < again < 0.15
    with pytest.raises(UserError, match="2-D toy"):
        reference_points("digits", 10)


def test_untrained_scores_far_above_the_floor_and_rows_repeat(untrained):
    """The exact comparisons repeat one computation in this process (same points, shapes and threads), which
    is bit-identical on any machine; the bounds are far from the measured values (SWD 4.1x the floor, 0.5
    on the board), which rounding cannot move."""
    rows = evaluate_points(untrained, [1, 2], num=500)
    assert [r["steps"] for r in rows] == [1, 2] and [r["nfe"] for r in rows] == [1, 2]
    ref, other = reference_points("checkerboard", 500)
    for r in rows:
        assert r["objective"] == "flow" and r["seconds"] > 0
        assert r["swd_floor"] == sliced_wasserstein(ref, other)
        assert r["swd"] > 3 * r["swd_floor"]  # Gaussian noise against the board
        assert 0.3 < r["on_board"] < 0.7  # noise lands on the filled squares by chance only
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    again = [{k: v for k, v in r.items() if k != "seconds"} for r in evaluate_points(untrained, [1, 2], num=500)]
    assert again == strip  # same noise seed, same reference: the same numbers
    other_noise = evaluate_points(untrained, [1], num=500, seed=1)[0]
    assert other_noise["swd"] != strip[0]["swd"] and other_noise["swd_floor"] == strip[0]["swd_floor"]


@pytest.mark.slow  # a few hundred training steps
def test_briefly_trained_flow_beats_untrained_at_128_steps(untrained, tmp_path):
    trained = flow_run(tmp_path / "flow", steps=300, batch=128)
    before = evaluate_points(untrained, [128], num=1000)[0]
    after = evaluate_points(trained, [128], num=1000)[0]
    assert after["swd"] < 0.75 * before["swd"]
    assert after["nfe"] == 128
