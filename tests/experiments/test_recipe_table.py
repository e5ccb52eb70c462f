"""The study report's "Recipes" section: each method's own recipe read from its objective's defaults, its
declared source, and what the common recipe changes."""

from shortcut_models.experiments.recipe_table import COLUMNS, common_changes, method_cells, recipes_section
from shortcut_models.experiments.study_plan import StudyPlan
from shortcut_models.objectives import OBJECTIVES

ALL = StudyPlan(methods=tuple(OBJECTIVES))  # every registered method
REFERENCES = (
    "kvfrans/shortcut-models",
    "EDAPINENUT/ExplicitShortCut",
    "Gsunshine/meanflow",
    "Lyy-iiis/imeanflow",
    "zlab-princeton/SoFlow",
)


def row(lines: list[str], title: str) -> list[str]:
    """The cells of the table row of the method titled ``title``."""
    (line,) = [line for line in lines if line.startswith(f"| {title} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_shortcut_row_is_the_papers_recipe_with_its_source():
    lines = recipes_section(ALL)
    title, sampler, weight, network, step_input, dropout, source = row(lines, "shortcut")
    assert (sampler, weight, network, step_input) == ("grid", "mse", "EMA, targets bounded by 4", "level (-log2 d)")
    assert dropout == "0" and "kvfrans/shortcut-models" in source and "targets_shortcut.py" in source


def test_rows_follow_each_objectives_defaults():
    lines = recipes_section(ALL)
    assert lines[2] == "| method | " + " | ".join(COLUMNS) + " | source |"
    meanflow = row(lines, "MeanFlow")[1:6]
    assert meanflow == ["logit-normal (mu 0.4, sigma 1)", "adaptive (p 1, eps 0.01)", "online", "size (d)", "0.1"]
    assert row(lines, "flow matching")[3] == "none (no network builds targets)"
    assert row(lines, "consistency training")[3:6] == ["EMA", "level (-log2 d)", "none (true labels)"]
    assert row(lines, "live reflow")[3] == "online"  # the authors' live reflow samples with the online network
    assert len([line for line in lines if line.startswith("| ") and "source" not in line]) == len(OBJECTIVES)


def test_the_common_recipe_line_names_what_it_changes():
    lines = recipes_section(ALL)
    assert lines[-1] == common_changes(("flow", "shortcut", "meanflow"))
    assert lines[-1].endswith(
        "changes, of each method's own: flow matching: time sampler; shortcut: time sampler, target network; "
        "MeanFlow: loss weight."
    )
    assert "common recipe" not in recipes_section(StudyPlan(recipes=("own",)))[-1]
    assert method_cells("shortcut", "tuned")["target network"] == "online, targets bounded by 4"
    assert method_cells("flow", "tuned") == method_cells("flow")  # flow matching has no target network


def test_every_objective_declares_where_its_recipe_comes_from():
    for name, cls in OBJECTIVES.items():
        source = cls.recipe_source
        assert isinstance(source, str) and len(source) > 40, name
        # a pinned reference repository, or the paper by its title in quotes
        assert any(repo in source for repo in REFERENCES) or source.count('"') >= 2, name
