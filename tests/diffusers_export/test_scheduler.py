"""ShortcutScheduler: the step times and sizes of `shortcut sample`, the step-size inputs each objective was
trained at, Euler steps in closed form, and diffusers' save/load of its config."""

import pytest
import torch

import shortcut_models as sm
from shortcut_models.objectives import OBJECTIVES, build_objective
from shortcut_models.sampling import step_inputs

pytest.importorskip("diffusers")
from shortcut_models.diffusers import ShortcutScheduler  # noqa: E402


@pytest.mark.parametrize("fixed", [None, 1 / 128, 1.0])
def test_every_count_takes_the_steps_of_shortcut_sample(fixed):
    scheduler = ShortcutScheduler(fixed_step_size=fixed)
    for n in range(1, 129):
        scheduler.set_timesteps(n)
        sizes = sm.step_schedule(n)
        assert scheduler.step_sizes == sizes and sum(sizes) == 1.0
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        assert scheduler.timesteps.tolist() == torch.tensor(starts, dtype=torch.float32).tolist()
        held = fixed if n < 128 and fixed is not None else None
        expected = sizes if held is None else [held] * len(sizes)
        assert scheduler.step_size_inputs.tolist() == torch.tensor(expected, dtype=torch.float32).tolist()
    scheduler.set_timesteps(3)
    assert scheduler.step_sizes == [0.5, 0.25, 0.25] and scheduler.timesteps.tolist() == [0.0, 0.5, 0.75]


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_each_objective_gets_the_step_size_inputs_it_was_trained_at(name):
    objective = build_objective(name, 10, {})
    scheduler = ShortcutScheduler.for_objective(objective)
    assert scheduler.config.max_steps == objective.max_steps
    for n in range(1, objective.max_steps + 1):
        assert scheduler.inputs_at(n) == step_inputs(sm.step_schedule(n), objective.sampling_d_at(n))


def test_an_objective_whose_inputs_no_setting_gives_is_refused():
    class PerCount:
        name, max_steps = "per-count", 128

        def sampling_d_at(self, steps):
            return 1.0 / steps  # a different held input at every count

    with pytest.raises(ValueError, match="feeds step-size inputs no ShortcutScheduler gives"):
        ShortcutScheduler.for_objective(PerCount())


def test_euler_steps_in_closed_form():
    """v = t: three steps (1/2, 1/4, 1/4) from x = 0 give 0.5 * 0 + 0.25 * 0.5 + 0.25 * 0.75 = 0.3125; a constant
    velocity c takes x0 to x0 + c at every count (the sizes sum to 1)."""
    scheduler = ShortcutScheduler()
    scheduler.set_timesteps(3)
    x = torch.zeros(2, 3)
    for t in scheduler.timesteps:
        x = scheduler.step(torch.full_like(x, float(t)), t, x).prev_sample
    assert torch.equal(x, torch.full((2, 3), 0.3125))
    x0, c = torch.randn(4, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0.5, -2.0])
    for n in (1, 5, 128):
        scheduler.set_timesteps(n)
        x = x0
        for t in scheduler.timesteps:
            x = scheduler.step(c.expand_as(x), t, x, return_dict=False)[0]
        torch.testing.assert_close(x, x0 + c, rtol=0, atol=1e-5)


def test_the_config_saves_and_loads(tmp_path):
    ShortcutScheduler(max_steps=64, fixed_step_size=1 / 64).save_pretrained(tmp_path)
    assert (tmp_path / "scheduler_config.json").is_file()
    loaded = ShortcutScheduler.from_pretrained(tmp_path)
    assert (loaded.config.max_steps, loaded.config.fixed_step_size) == (64, 1 / 64)
    loaded.set_timesteps(48)
    assert loaded.step_sizes == sm.step_schedule(48, 64) and loaded.step_size_inputs.unique().tolist() == [1 / 64]


def test_bad_use_is_a_value_error():
    scheduler = ShortcutScheduler()
    with pytest.raises(ValueError, match="call set_timesteps before step"):
        scheduler.step(torch.zeros(1), 0.0, torch.zeros(1))
    for bad in (0, 129, 2.5, "4"):
        with pytest.raises(ValueError, match="num_inference_steps must be an integer from 1 to 128"):
            scheduler.set_timesteps(bad)
    scheduler.set_timesteps(2)
    with pytest.raises(ValueError, match="timestep 0.25 is not one of this scheduler's step times"):
        scheduler.step(torch.zeros(1), 0.25, torch.zeros(1))
    scheduler.set_timesteps(1)
    scheduler.step(torch.zeros(1), 0.0, torch.zeros(1))
    with pytest.raises(ValueError, match="all 1 steps are taken"):
        scheduler.step(torch.zeros(1), 0.0, torch.zeros(1))
    with pytest.raises(ValueError, match="fixed_step_size must lie in"):
        ShortcutScheduler(fixed_step_size=0.0)
