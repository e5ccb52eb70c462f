"""A preset changes an objective's knobs only where it names them: every other knob of every objective is the
objective's own default (its paper's recipe), under every preset and under the TrainConfig defaults."""

import pytest

from shortcut_models.config import PRESETS, TrainConfig, build_config
from shortcut_models.experiments.study_plan import PRESETS as STUDY_PRESETS
from shortcut_models.objectives import OBJECTIVES, build_objective


def own_defaults(objective: str) -> dict:
    """Every knob of ``objective`` at the default its class declares."""
    return OBJECTIVES[objective].from_knobs().args()


def named(knobs: dict, objective: str) -> dict:
    """The knobs of ``knobs`` that ``objective`` has."""
    return {k: v for k, v in knobs.items() if k in OBJECTIVES[objective].knobs()}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_the_train_config_defaults_leave_every_knob_at_the_objectives_own_default(objective):
    assert TrainConfig().objective_args == {}
    assert build_objective(objective, 0, TrainConfig().objective_args).args() == own_defaults(objective)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_a_preset_changes_only_the_knobs_it_names(preset, objective):
    resolved = build_config(preset, objective).resolved_objective_args()
    names = named(PRESETS[preset].get("objective_args", {}), objective)
    assert resolved == {**own_defaults(objective), **names}
    # what the preset names is what changed (a knob it names at the default value changes nothing)
    changed = {k for k, v in resolved.items() if v != own_defaults(objective)[k]}
    assert changed <= set(names)


def test_the_study_presets_name_no_objective_knob():
    """The study's own recipes (and the demo's, through its named recipe) start from each method's defaults."""
    for preset in STUDY_PRESETS.values():
        assert not PRESETS[preset].get("objective_args"), preset
        for objective in OBJECTIVES:
            assert build_config(preset, objective).resolved_objective_args() == own_defaults(objective)


def test_the_digits_preset_names_its_tuned_knobs():
    """`shortcut train`'s embedded default keeps the choices of docs/demo/tuning.md, named in the preset."""
    assert PRESETS["digits"]["objective_args"] == {"class_dropout": 0.1, "target_network": "online"}
    knobs = build_config().resolved_objective_args()
    assert (knobs["class_dropout"], knobs["target_network"]) == (0.1, "online")
