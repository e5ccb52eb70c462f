"""The study's sample grids: one row per method labelled at the left, one column per step count titled at the
top; the figure grows by one panel per row and column, and no label overlaps another or a panel."""

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from shortcut_models.experiments.study_figures import grid_figure
from shortcut_models.objectives import OBJECTIVES
from shortcut_models.outputs import save_figure

TITLES = [o.title for o in OBJECTIVES.values()]
COLUMNS = ["1 step", "2 steps", "4 steps"]


def images(rows: int, columns: int) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [[torch.rand(64, 1, 8, 8, generator=g) * 2 - 1 for _ in range(columns)] for _ in range(rows)]


def boxes(fig):
    """Display boxes of the figure's texts and panels as the renderer draws them."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    texts = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.texts]
    panels = [ax.get_window_extent(renderer) for ax in fig.axes]
    return texts, panels


@pytest.mark.parametrize("methods", [1, 14])
def test_grids_label_every_row_and_column_without_overlap(methods):
    labels = (TITLES * 2)[:methods]  # 14: every registered method (and more names if the registry is smaller)
    fig = grid_figure(images(methods, 3), labels, COLUMNS)
    texts, panels = boxes(fig)
    assert len(panels) == methods * 3
    assert sorted(t.replace("\n", " ") for t, _ in texts) == sorted(labels + COLUMNS)
    everything = [b for _, b in texts] + panels
    for i, a in enumerate(everything):
        assert fig.bbox.contains(a.x0, a.y0) and fig.bbox.contains(a.x1, a.y1)  # inside the figure
        for b in everything[i + 1 :]:
            assert not a.overlaps(b)
    # row labels left of every panel, column titles above every panel
    left = min(p.x0 for p in panels)
    top = max(p.y1 for p in panels)
    for text, box in texts:
        assert box.x1 < left if text not in COLUMNS else box.y0 > top


def test_the_figure_grows_by_one_panel_pitch_per_row_and_column(tmp_path):
    labels = TITLES[:2]
    # the width follows the longest label: the same one on every row here
    one, two, many = (grid_figure(images(r, 3), ["shortcut"] * r, COLUMNS).get_size_inches() for r in (1, 2, 14))
    pitch = two[1] - one[1]
    assert many[1] == pytest.approx(one[1] + 13 * pitch) and one[0] == two[0] == pytest.approx(many[0])
    narrow, wide = (grid_figure(images(2, c), labels, COLUMNS[:c]).get_size_inches() for c in (1, 3))
    assert wide[1] == narrow[1]
    # a panel is at least its 8 x 8 tile of 8 x 8 images at twice their size, the pitch a little more
    assert 2 * 73 / 150 <= pitch < 2 * 73 / 150 + 0.2
    assert (wide[0] - narrow[0]) / 2 == pytest.approx(pitch)  # square panels: a column adds what a row does
    path = tmp_path / "grids.png"
    fig = grid_figure(images(14, 3), (TITLES * 2)[:14], COLUMNS)
    save_figure(fig, path)
    width, height = Image.open(path).size
    assert (width, height) == pytest.approx(tuple(fig.get_size_inches() * fig.dpi), abs=1)
    assert height > 2 * width  # 14 rows of 3 panels: a tall figure


def test_a_row_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="2 rows of 3 image sets"):
        grid_figure(images(2, 2), TITLES[:2], COLUMNS)
