"""Preprocessing checks (lesson 02): one-hot targets and statistics fitted on the training split.

- ``one_hot(y, num_classes)``: the reference is ``torch.nn.functional.one_hot`` (int64), with
  the course's convention that a label outside ``[0, num_classes)`` raises ``ValueError``
  (torch raises ``RuntimeError``; NumPy's indexing raises ``IndexError`` above the range and
  silently wraps negative labels).
- ``standardize_split(X_train, X_test)``: the reference is scikit-learn's ``StandardScaler``
  fitted on ``X_train`` alone (population standard deviation; a column constant in the
  training split is only centred), then applied to both splits.

Each mistake is the reference with one thing changed; none of it is the learner's code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "one_hot_1_based",
    "one_hot_classes_from_labels",
    "one_hot_floats",
    "one_hot_threshold",
    "one_hot_transposed",
    "standardize_fit_on_both",
    "standardize_min_max_again",
    "standardize_rows",
    "standardize_sample_std",
    "standardize_test_on_its_own",
    "standardize_zero_std_nan",
    "torch_one_hot",
    "sklearn_standardize_split",
]


def _check_labels(y, num_classes) -> np.ndarray:
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}); got values from {y.min()} "
                         f"to {y.max()}")
    return y


def torch_one_hot(y, num_classes):
    """``F.one_hot(torch.as_tensor(y), num_classes)`` as an int64 array of shape (N, num_classes);
    ValueError for a label outside [0, num_classes)."""
    y = _check_labels(y, num_classes)
    return F.one_hot(torch.as_tensor(y, dtype=torch.int64), int(num_classes)).numpy().copy()


def one_hot_threshold(y, num_classes):
    """``(y > 0)`` as integers: a binarization, one column, class 0 against the rest."""
    return (np.asarray(y) > 0).astype(np.int64)


def one_hot_classes_from_labels(y, num_classes):
    """``F.one_hot`` with its default ``num_classes=-1``: the number of columns is y.max() + 1."""
    y = _check_labels(y, num_classes)
    return F.one_hot(torch.as_tensor(y, dtype=torch.int64)).numpy().copy()


def one_hot_1_based(y, num_classes):
    """Column ``y - 1``: the labels read as 1-based (class 0 wraps around to the last column)."""
    y = _check_labels(y, num_classes)
    return torch_one_hot((y - 1) % num_classes, num_classes)


def one_hot_floats(y, num_classes):
    """The right values as float64 (what ``np.eye(num_classes)[y]`` gives)."""
    return torch_one_hot(y, num_classes).astype(np.float64)


def one_hot_transposed(y, num_classes):
    """Shape (num_classes, N): one row per class instead of one row per example."""
    return torch_one_hot(y, num_classes).T.copy()


# ---------------------------------------------------------------------------------------------
# standardize_split
# ---------------------------------------------------------------------------------------------
def sklearn_standardize_split(X_train, X_test):
    """``StandardScaler().fit(X_train)``, then ``transform`` of both splits."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.asarray(X_train, dtype=np.float64))
    return scaler.transform(X_train), scaler.transform(X_test)


def _apply(mean, std, X_train, X_test):
    return (np.asarray(X_train) - mean) / std, (np.asarray(X_test) - mean) / std


def _safe(std):
    return np.where(std > 0, std, 1.0)


def standardize_fit_on_both(X_train, X_test):
    """Statistics of train and test together: the test set leaks into the preprocessing."""
    both = np.vstack([X_train, X_test])
    return _apply(both.mean(axis=0), _safe(both.std(axis=0)), X_train, X_test)


def standardize_test_on_its_own(X_train, X_test):
    """Each split standardized with its own statistics."""
    z_train, _ = sklearn_standardize_split(X_train, X_train)
    z_test, _ = sklearn_standardize_split(X_test, X_test)
    return z_train, z_test


def standardize_min_max_again(X_train, X_test):
    """Standardized, then min-max normalized again with the training split's min and max."""
    z_train, z_test = sklearn_standardize_split(X_train, X_test)
    lo, hi = z_train.min(axis=0), z_train.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (z_train - lo) / span, (z_test - lo) / span


def standardize_sample_std(X_train, X_test):
    """The sample standard deviation (ddof=1) of the training split."""
    X_train = np.asarray(X_train, dtype=np.float64)
    return _apply(X_train.mean(axis=0), _safe(X_train.std(axis=0, ddof=1)), X_train, X_test)


def standardize_rows(X_train, X_test):
    """Each example (row) standardized over its own features."""
    def rows(X):
        X = np.asarray(X, dtype=np.float64)
        std = X.std(axis=1, keepdims=True)
        return (X - X.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)

    return rows(X_train), rows(X_test)


def standardize_zero_std_nan(X_train, X_test):
    """A column constant in the training split divided by its std of 0 (nan, inf)."""
    X_train = np.asarray(X_train, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _apply(X_train.mean(axis=0), X_train.std(axis=0), X_train, X_test)
