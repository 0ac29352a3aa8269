"""Offline data sets: scikit-learn's bundled 8x8 digits, split and standardized; label noise.

Used by lessons 01 to 09 (the digits) and by lessons 05 and 07 (:func:`flip_labels`, which
makes a small training set overfit on purpose).

Nothing is downloaded: ``sklearn.datasets.load_digits`` reads a file shipped with
scikit-learn.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["DigitsSplit", "flip_labels", "load_digits_split"]


class DigitsSplit(NamedTuple):
    """A train/test split of the digits, in scikit-learn's order.

    Attributes
    ----------
    X_train : ndarray, shape (n_train, 64), float64
    X_test : ndarray, shape (n_test, 64), float64
    y_train : ndarray, shape (n_train,), int64
        Class indices 0..9 (not one-hot).
    y_test : ndarray, shape (n_test,), int64
    """

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def load_digits_split(test_fraction: float = 0.25, seed: int = 0,
                      standardize: bool = True) -> DigitsSplit:
    """The 1797 handwritten digits (8x8 pixels, values 0..16), split into train and test.

    Parameters
    ----------
    test_fraction : float
        Share of the examples held out for testing, stratified by class.
    seed : int
        Seed of the split; the same seed gives the same split.
    standardize : bool
        Subtract each pixel's training mean and divide by its training standard deviation
        (the test set uses the training statistics). Pixels that are constant in the training
        set are only centred (their standard deviation is taken as 1).

    Returns
    -------
    DigitsSplit
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X.astype(np.float64), y.astype(np.int64), test_size=test_fraction,
        random_state=seed, stratify=y)
    if standardize:
        mean = X_train.mean(axis=0)
        std = X_train.std(axis=0)
        std[std == 0.0] = 1.0
        X_train = (X_train - mean) / std
        X_test = (X_test - mean) / std
    return DigitsSplit(X_train, X_test, y_train, y_test)


def flip_labels(y, fraction: float, seed: int = 0, *, exact: bool = True,
                n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Give some examples a wrong label, each replaced by one of the other classes uniformly.

    Parameters
    ----------
    y : ndarray, shape (n,), int
        Class indices 0 .. n_classes - 1.
    fraction : float
        Share of labels to corrupt, 0 <= fraction <= 1.
    seed : int
        Seed of the ``numpy.random.default_rng`` that draws which labels and their new class.
    exact : bool
        True: exactly ``round(fraction * n)`` labels, chosen without replacement. False: each
        label independently with probability ``fraction`` (the count varies around
        ``fraction * n``).
    n_classes : int, optional
        Default: ``y.max() + 1``.

    Returns
    -------
    y_noisy : ndarray, shape (n,), int64
    flipped : ndarray, shape (n,), bool
        True where the label was changed.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    gen = np.random.default_rng(seed)
    y = np.asarray(y, dtype=np.int64)
    n_classes = int(y.max()) + 1 if n_classes is None else int(n_classes)
    if exact:
        flipped = np.zeros(y.shape, dtype=bool)
        flipped[gen.choice(y.size, int(round(fraction * y.size)), replace=False)] = True
    else:
        flipped = gen.random(y.shape) < fraction
    y_noisy = y.copy()
    shift = gen.integers(1, n_classes, size=int(flipped.sum()))
    y_noisy[flipped] = (y[flipped] + shift) % n_classes
    return y_noisy, flipped
