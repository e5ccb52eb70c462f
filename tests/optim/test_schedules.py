"""Learning-rate schedules: closed-form values at chosen steps, the shared warm-up, and the default
(constant) computing exactly what the trainer computed before the registry existed."""

import math
from dataclasses import dataclass

import pytest

from shortcut_models.config import TrainConfig
from shortcut_models.optim import LR_SCHEDULES, learning_rate
from shortcut_models.optim.schedules import decay_start


@dataclass
class Settings:
    lr: float = 1.0
    warmup_steps: int = 10
    lr_min: float = 0.1
    decay_share: float = 0.2


def cos_value(p: float, s: Settings) -> float:
    return s.lr_min + (s.lr - s.lr_min) * 0.5 * (1 + math.cos(math.pi * p))


def lin_value(p: float, s: Settings) -> float:
    return s.lr_min + (s.lr - s.lr_min) * (1 - p)


S = Settings()
TOTAL = 110  # warm-up 10, then 100 steps of decay for cosine and linear; wsd decays over steps 88..109
CASES = {
    "constant": {0: 0.1, 4: 0.5, 9: 1.0, 10: 1.0, 60: 1.0, 109: 1.0, 500: 1.0},
    "cosine": {0: 0.1, 9: 1.0, 10: 1.0, 35: cos_value(0.25, S), 60: 0.55, 109: cos_value(0.99, S), 110: 0.1},
    "linear": {0: 0.1, 9: 1.0, 10: 1.0, 35: lin_value(0.25, S), 60: 0.55, 109: lin_value(0.99, S), 110: 0.1},
    "wsd": {0: 0.1, 9: 1.0, 10: 1.0, 60: 1.0, 87: 1.0, 88: 1.0, 99: 0.55, 109: lin_value(21 / 22, S), 200: 0.1},
}


def test_every_schedule_is_tested():
    assert set(CASES) == set(LR_SCHEDULES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_schedule_values_at_chosen_steps(name):
    schedule = LR_SCHEDULES[name]
    for step, want in CASES[name].items():
        assert schedule(step, TOTAL, S) == pytest.approx(want, rel=1e-12, abs=1e-15), (name, step)


@pytest.mark.parametrize("name", sorted(LR_SCHEDULES))
def test_every_schedule_warms_up_alike_then_stays_between_lr_min_and_lr(name):
    schedule = LR_SCHEDULES[name]
    values = [schedule(step, TOTAL, S) for step in range(TOTAL)]
    assert values[:10] == [S.lr * (step + 1) / 10 for step in range(10)]
    after = values[10:]
    assert all(S.lr_min <= v <= S.lr for v in after)
    assert all(b <= a for a, b in zip(after, after[1:])), "a schedule rises after its warm-up"
    assert values == [schedule(step, TOTAL, S) for step in range(TOTAL)]  # pure: the same again


def test_no_warmup_starts_at_lr():
    s = Settings(warmup_steps=0)
    for name, schedule in LR_SCHEDULES.items():
        assert schedule(0, 100, s) == s.lr, name


def test_constant_is_bit_identical_to_the_former_trainer_formula():
    for warmup in (0, 1, 7, 200):
        cfg = TrainConfig(lr=3e-4, warmup_steps=warmup)
        for step in range(0, 400, 3):
            former = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else cfg.lr
            assert learning_rate(cfg, step) == former  # exact, not approximate


def test_wsd_decays_over_the_last_share_of_the_steps():
    assert decay_start(100, 0.2) == 80
    assert decay_start(10, 0.2) == 8
    assert decay_start(30, 0.1) == 27
    assert decay_start(100, 1.0) == 0  # decay from the start (after the warm-up)
    assert decay_start(3, 0.01) == 2  # at least one step decays
    s = Settings(warmup_steps=0, lr_min=0.0, decay_share=0.25)
    assert [LR_SCHEDULES["wsd"](step, 8, s) for step in range(8)] == [1, 1, 1, 1, 1, 1, 1, 0.5]


def test_a_warmup_longer_than_the_stable_phase_wins_until_it_ends():
    s = Settings(warmup_steps=90)  # wsd's decay starts at step 80 of 100
    assert LR_SCHEDULES["wsd"](85, 100, s) == pytest.approx(86 / 90)
    assert LR_SCHEDULES["wsd"](90, 100, s) == pytest.approx(0.55)


def test_a_warmup_as_long_as_the_run_never_decays():
    s = Settings(warmup_steps=50)
    for name, schedule in LR_SCHEDULES.items():
        assert [schedule(step, 20, s) for step in range(20)] == [(step + 1) / 50 for step in range(20)], name


def test_the_trainer_config_selects_the_schedule():
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10, lr_min=0.1, lr_schedule="cosine")
    assert learning_rate(cfg, 60) == pytest.approx(0.55)
