"""The 1-nearest-neighbour two-sample test: closed-form cases, ties, equal set sizes, and how it reads digits."""

import pytest
import torch
from torch.nn import functional as F

from shortcut_models.data import digits
from shortcut_models.metrics.one_nn import one_nn_accuracies, one_nn_accuracy


def _points(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)[:, None]


def test_hand_computed_example():
    # pooled: 0 (a), 1 (a), 10 (b), 2.5 (b). Nearest other point: 0 -> 1 (a, right), 1 -> 0 (a, right),
    # 10 -> 2.5 (b, right), 2.5 -> 1 (a, wrong).
    assert one_nn_accuracies(_points(0, 1), _points(10, 2.5)) == (1.0, 0.5)
    assert one_nn_accuracy(_points(0, 1), _points(10, 2.5)) == 0.75


def test_a_tie_scores_the_share_of_own_set_neighbours():
    # 2 (a) is at distance 2 from 0 (a) and from 4 (b): half right. 0 -> 2 (a) right, 4 -> 2 (a) wrong,
    # 9 -> 4 (b) right.
    assert one_nn_accuracies(_points(0, 2), _points(4, 9)) == (0.75, 0.5)
    # the result does not depend on the order of the rows
    assert one_nn_accuracies(_points(2, 0), _points(9, 4)) == (0.75, 0.5)


def test_copies_score_zero_and_separated_sets_one():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 3, generator=g)
    assert one_nn_accuracy(a, a.clone()) == 0.0  # each point's nearest is its copy in the other set
    assert one_nn_accuracy(a, torch.randn(50, 3, generator=g) + 100) == 1.0


def test_two_samples_of_one_distribution_score_about_half():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, 2, generator=g), torch.randn(1000, 2, generator=g)
    assert one_nn_accuracy(a, b) == pytest.approx(0.5, abs=0.03)
    shifted = one_nn_accuracy(a, b + 1.0)
    assert 0.6 < shifted < 1.0


def test_only_the_first_n_rows_of_the_larger_set_count():
    a, b = _points(0, 1), _points(10, 2.5)
    # the extra rows (2.6 in a, 0.1 in b) would change the neighbours of 2.5 and 0 if they were pooled
    assert one_nn_accuracy(torch.cat([a, _points(2.6)]), b) == one_nn_accuracy(a, torch.cat([b, _points(0.1)])) == 0.75


def test_images_are_flattened_and_bad_shapes_refused():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(20, 1, 8, 8, generator=g)
    assert one_nn_accuracy(x, x + 5) == one_nn_accuracy(x.flatten(1), (x + 5).flatten(1)) == 1.0
    with pytest.raises(ValueError, match="equal-size rows"):
        one_nn_accuracy(torch.zeros(4, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="at least 2 rows"):
        one_nn_accuracy(torch.zeros(1, 3), torch.zeros(4, 3))


def test_on_digits_blur_separates_and_held_out_data_does_not():
    """Pixel space on the 8x8 digits: held-out digits are indistinguishable from train digits, blurred ones
    are not; noisy copies of the train images sit closer to them than other digits do (below 0.5)."""
    train, test = digits.load_digits("train")[0], digits.load_digits("test")[0]
    floor = one_nn_accuracy(test, train[::5])
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])[None, None] / 16
    blurred = F.conv2d(F.pad(test, (1, 1, 1, 1), value=-1.0), kernel)
    assert 0.44 < floor < 0.56
    assert one_nn_accuracy(blurred, train[::5]) > 0.9
    noisy_copies = train[:300] + 0.1 * torch.randn(300, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert one_nn_accuracy(noisy_copies, train[:300]) < 0.1
