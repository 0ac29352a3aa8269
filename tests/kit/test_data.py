"""dlopt.kit.data: the digits split, and label noise (exact count or per label)."""

from __future__ import annotations

import numpy as np
import pytest

from dlopt.kit.data import flip_labels


def test_flip_labels_changes_exactly_the_requested_share():
    y = np.repeat(np.arange(10), 10)
    noisy, flipped = flip_labels(y, 0.2, seed=1)
    assert flipped.sum() == 20 and np.all(noisy[flipped] != y[flipped])
    np.testing.assert_array_equal(noisy[~flipped], y[~flipped])
    assert noisy.min() >= 0 and noisy.max() <= 9


def test_flip_labels_per_label_draws_a_count_near_the_share():
    y = np.repeat(np.arange(10), 100)
    noisy, flipped = flip_labels(y, 0.2, seed=3, exact=False, n_classes=10)
    assert 150 < flipped.sum() < 250 and np.all(noisy[flipped] != y[flipped])
    np.testing.assert_array_equal(noisy[~flipped], y[~flipped])
    again, _ = flip_labels(y, 0.2, seed=3, exact=False, n_classes=10)
    np.testing.assert_array_equal(noisy, again)  # the seed decides everything


def test_flip_labels_refuses_a_share_outside_0_1():
    with pytest.raises(ValueError, match="fraction"):
        flip_labels(np.arange(3), 1.5)
