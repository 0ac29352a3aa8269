"""Lesson 11: the losses whose gradients the data-parallel exercises combine.

Each ``*_grad(w, X, y)`` returns the gradient, with respect to ``w``, of the **mean** loss over
the rows of ``X``: the per-rank (or per-micro-batch) gradient of lesson 11's exercises, which
the learner's ``data_parallel_gradient`` and ``accumulated_gradient`` receive as ``grad_fn``.
They are given, not graded (a check passes them by reference, as functions of a ``dlopt``
module); the checks' oracle is torch's autograd on the whole batch.

- :func:`softmax_regression_grad`: a linear softmax classifier, logits ``X @ w``, cross-entropy
  with class indices ``y``; ``w`` has shape ``(d, C)``.
- :func:`least_squares_grad`: ``0.5 * (X @ w - y)**2``; ``w`` has shape ``(d,)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["least_squares_grad", "least_squares_loss", "softmax_regression_grad",
           "softmax_regression_loss"]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax_regression_loss(w, X, y) -> float:
    """Mean cross-entropy of ``softmax(X @ w)`` against class indices ``y``.

    Parameters
    ----------
    w : ndarray, shape (d, C)
    X : ndarray, shape (n, d)
    y : ndarray of int, shape (n,)
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    log_p = _log_softmax(X @ np.asarray(w, dtype=np.float64))
    return float(-log_p[np.arange(len(y)), y].mean())


def softmax_regression_grad(w, X, y) -> np.ndarray:
    """Gradient of :func:`softmax_regression_loss` with respect to ``w``: ``X.T (p - Y) / n``.

    Returns
    -------
    ndarray, shape (d, C)
        The gradient of the MEAN loss over the ``n`` rows of ``X``.
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    p = np.exp(_log_softmax(X @ np.asarray(w, dtype=np.float64)))
    p[np.arange(len(y)), y] -= 1.0
    return X.T @ p / len(y)


def least_squares_loss(w, X, y) -> float:
    """Mean of ``0.5 * (X @ w - y)**2`` over the rows of ``X`` (``w`` of shape ``(d,)``)."""
    r = np.asarray(X, dtype=np.float64) @ np.asarray(w, dtype=np.float64) - np.asarray(y)
    return float(0.5 * np.mean(r * r))


def least_squares_grad(w, X, y) -> np.ndarray:
    """Gradient of :func:`least_squares_loss`: ``X.T (X @ w - y) / n``, shape ``(d,)``."""
    X = np.asarray(X, dtype=np.float64)
    r = X @ np.asarray(w, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return X.T @ r / len(r)
