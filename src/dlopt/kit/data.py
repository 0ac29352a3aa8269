"""Offline data sets: scikit-learn's bundled 8x8 digits, split and standardized.

Nothing is downloaded: ``sklearn.datasets.load_digits`` reads a file shipped with
scikit-learn.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["DigitsSplit", "load_digits_split"]


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
