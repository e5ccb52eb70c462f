"""Decaying learning-rate schedules in training: a run stopped by a signal just before, at and just after
the step where its decay starts, then resumed, ends bit-identical to an uninterrupted run (the same steps
computed in this process, with the same shapes and thread count: exact on any machine); the logged
learning rate follows the schedule; extending a run says what happens to its schedule."""

import signal

import pytest

from shortcut_models.config import build_config
from shortcut_models.optim import LR_SCHEDULES
from shortcut_models.training import Trainer

STEPS = 16
TINY = [
    "model_args.width=16",
    "model_args.depth=1",
    "batch_size=16",
    f"steps={STEPS}",
    "ema_decay=0.9",
    "ckpt_every=1000",
    "sample_steps=[1]",
    "logger=none",
    "lr=0.01",
    "lr_min=0.001",
]
# where each schedule's decay starts: wsd after 12 of 16 steps (decay_share 0.25), cosine after its warm-up
DECAY_START = {"wsd": 12, "cosine": 4}
EXTRA = {
    "wsd": ["lr_schedule=wsd", "decay_share=0.25", "warmup_steps=2"],
    "cosine": ["lr_schedule=cosine", "warmup_steps=4"],
}


def config(schedule, *extra):
    return build_config("checkerboard", "shortcut", None, [*TINY, *EXTRA[schedule], *extra])


def stop_at(step):
    """An on_log callback that sends this process SIGTERM at ``step`` (the trainer stops there and saves)."""

    def on_log(now, row):
        if now == step:
            signal.raise_signal(signal.SIGTERM)

    return on_log


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Uninterrupted runs, one per schedule, with their logged learning rates."""
    runs = {}
    for schedule in DECAY_START:
        trainer = Trainer(config(schedule, "log_every=1"), tmp_path_factory.mktemp(schedule), progress=False)
        rates = {}
        trainer.run(on_log=lambda step, row, rates=rates: rates.__setitem__(step, row["lr"]))
        runs[schedule] = trainer, rates
    return runs


@pytest.mark.parametrize("schedule", sorted(DECAY_START))
def test_the_logged_learning_rate_follows_the_schedule(schedule, straight):
    trainer, rates = straight[schedule]
    cfg = trainer.cfg
    assert rates == {s + 1: pytest.approx(LR_SCHEDULES[schedule](s, STEPS, cfg)) for s in range(STEPS)}
    start = DECAY_START[schedule]
    assert rates[start] == pytest.approx(cfg.lr) and rates[start + 2] < cfg.lr  # step start - 1 is logged as start
    assert rates[STEPS] < 0.4 * cfg.lr


@pytest.mark.parametrize("schedule", sorted(DECAY_START))
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_stop_and_resume_around_the_decay_start_is_bit_identical(
    schedule, offset, straight, tmp_path, assert_same_state
):
    stop = DECAY_START[schedule] + offset
    first = Trainer(config(schedule, f"log_every={stop}"), tmp_path, progress=False)
    first.run(on_log=stop_at(stop))
    assert first.stopped_by_signal and first.step == stop
    resumed = Trainer(config(schedule, "log_every=5"), tmp_path, progress=False)
    assert resumed.step == stop
    resumed.run()
    assert not resumed.stopped_by_signal and resumed.step == STEPS
    assert_same_state(straight[schedule][0], resumed)


def test_extending_a_decaying_run_says_how_its_learning_rate_changes(tmp_path, capsys):
    Trainer(config("cosine", "log_every=4", "steps=8"), tmp_path, progress=False).run()
    capsys.readouterr()
    Trainer(config("cosine", "log_every=4", "steps=16"), tmp_path, progress=False)
    err = capsys.readouterr().err
    assert "steps changed from 8 to 16: the cosine learning-rate schedule is recomputed" in err
