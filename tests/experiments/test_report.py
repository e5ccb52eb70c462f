"""The report's verdicts (better, equal, worse at a number of steps) and its quality goals."""

from shortcut_models.experiments.report import compare_at, goals


def test_verdicts_and_goals():
    fd = {"flow": {1: 100.0, 2: 50.0, 4: 20.0, 128: 5.0}, "shortcut": {1: 9.0, 2: 8.0, 4: 7.0, 128: 5.2}}
    assert compare_at(fd, 128) == "equal" and compare_at(fd, 1) == "better"
    met = {text: ok for text, ok, _ in goals(fd)}
    assert met == {
        "shortcut at 1 step within 2x of flow matching at 128 steps": True,
        "shortcut better than flow matching at 1, 2 and 4 steps": True,
        "shortcut at 128 steps within 1.25x of flow matching at 128 steps": True,
    }
    fd["shortcut"][128] = 7.0
    assert compare_at(fd, 128) == "worse" and not goals(fd)[2][1]


def test_the_reports_name_the_optimiser_and_a_decaying_schedule():
    from shortcut_models.config import build_config
    from shortcut_models.experiments.report import optimiser_text

    assert (
        optimiser_text(build_config("digits-uncond")) == "AdamW lr 0.001 (warm-up 200)"
    )  # the reports' text as before
    cosine = build_config("digits-uncond", None, None, ["optimizer=sgd", "lr_schedule=cosine", "lr_min=1e-5"])
    assert optimiser_text(cosine) == "SGD lr 0.001, cosine to 1e-05 (warm-up 200)"
