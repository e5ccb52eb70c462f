"""The reports' verdicts (better, tie, worse), their goals from one seed's scores, and the rule that every
function of the experiments package (each report section among them) stays short."""

import ast
from pathlib import Path

import shortcut_models.experiments as experiments
from shortcut_models.experiments.goals import goals
from shortcut_models.experiments.report import verdict
from shortcut_models.experiments.study_plan import StudyPlan
from shortcut_models.experiments.study_scores import Scores

PLAN = StudyPlan(steps=100, seeds=(0,), methods=("flow", "shortcut"), domains=("digits",), recipes=("own",))


def one_seed_rows(fd: dict[str, dict[int, float]]) -> list[dict]:
    return [
        {"domain": "digits", "method": m, "recipe": "own", "seed": 0, "budget": 100, "steps": n, "fd_digits": v}
        for m, by_steps in fd.items()
        for n, v in by_steps.items()
    ]


def test_verdicts_with_one_seed_use_a_five_percent_band_and_with_seeds_the_t_test():
    assert verdict([5.2], [5.0]) == ("tie", "one seed: a tie means within 5%")
    assert verdict([4.0], [5.0])[0] == "better" and verdict([5.3], [5.0])[0] == "worse"
    word, rule = verdict([4.0, 4.1, 3.9], [5.0, 5.1, 4.9])
    assert (word, rule) == ("better", "Welch's t-test over seeds, p < 0.05")
    assert verdict([5.0, 6.0, 4.0], [5.1, 6.1, 4.1])[0] == "tie"


def test_goals_of_the_demo_from_one_seed():
    fd = {"flow": {1: 100.0, 2: 50.0, 4: 20.0, 128: 5.0}, "shortcut": {1: 9.0, 2: 8.0, 4: 7.0, 128: 5.2}}
    met = {text: (ok, numbers) for text, ok, numbers in goals(Scores(one_seed_rows(fd)), PLAN, {})}
    assert met == {
        "the best one-step model without a teacher within 2x of flow matching at 128 steps, both under the own "
        "recipe": (True, "shortcut 9.00 vs 2 x 5.00 = 10.00"),
        "shortcut better than flow matching at 1, 2 and 4 steps": (
            True,
            "1: 9.00 vs 100.00, 2: 8.00 vs 50.00, 4: 7.00 vs 20.00",
        ),
        "shortcut at 128 steps within 1.25x of flow matching at 128 steps": (True, "5.20 vs 1.25 x 5.00 = 6.25"),
    }
    fd["shortcut"][128], fd["shortcut"][4] = 7.0, 25.0
    costs = {"flow": {"ratio": 1.0, "model": 1.0}, "shortcut": {"ratio": 1.3, "model": 1.083}}
    met = {text: ok for text, ok, _ in goals(Scores(one_seed_rows(fd)), PLAN, costs)}
    assert not met["shortcut at 128 steps within 1.25x of flow matching at 128 steps"]
    assert not met["shortcut better than flow matching at 1, 2 and 4 steps"]
    assert not met["every objective's step costs at most 1.15x its cost model"]


def test_every_function_of_the_experiments_package_is_at_most_40_lines():
    long = []
    for file in sorted(Path(experiments.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 40:
                    long.append(f"{file.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_the_reports_name_the_optimiser_and_a_decaying_schedule():
    from shortcut_models.config import build_config
    from shortcut_models.experiments.report import optimiser_text

    assert (
        optimiser_text(build_config("digits-uncond")) == "AdamW lr 0.001 (warm-up 200)"
    )  # the reports' text as before
    cosine = build_config("digits-uncond", None, None, ["optimizer=sgd", "lr_schedule=cosine", "lr_min=1e-5"])
    assert optimiser_text(cosine) == "SGD lr 0.001, cosine to 1e-05 (warm-up 200)"
