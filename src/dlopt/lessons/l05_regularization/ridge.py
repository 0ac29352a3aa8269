"""Lesson 05: ridge regression in closed form, and the experiment on choosing its lambda.

Ridge regression is given code in this course (no lesson grades it): lesson 05 uses it as the
model whose regularization strength is chosen by k-fold cross-validation. The learner's
``choose_lambda_by_cv`` does the choosing; :func:`lambda_sweep` runs it and adds the training
error and the error on a large fresh test set for comparison. Errors are computed with
``sklearn.metrics.mean_squared_error``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["CVSweep", "lambda_sweep", "make_regression", "plot_cv_sweep", "ridge_fit"]


def ridge_fit(X: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Weights of ridge regression without intercept, in closed form.

    Minimizes ``1/(2n) ||X w - y||^2 + lam/2 ||w||^2`` (the mean squared error over 2, plus
    lesson 05's L2 penalty with its 1/2). Setting the gradient
    ``X^T (X w - y) / n + lam w`` to zero gives ``(X^T X / n + lam I) w = X^T y / n``.
    This is scikit-learn's ``Ridge(alpha=n * lam, fit_intercept=False)``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    lam : float
        Regularization strength, ``lam >= 0``; with ``lam = 0`` ``X`` needs full column rank.

    Returns
    -------
    w : ndarray, shape (d,)
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must have shape (n, d) and y shape (n,); got {X.shape} and {y.shape}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    n, d = X.shape
    return np.linalg.solve(X.T @ X / n + lam * np.eye(d), X.T @ y / n)


def make_regression(n: int, d: int, *, noise: float = 1.0, n_test: int = 0,
                    seed: int = 0) -> tuple[np.ndarray, ...]:
    """A linear regression problem ``y = X w_true + noise`` with standard-normal features.

    Parameters
    ----------
    n : int
        Training examples.
    d : int
        Features.
    noise : float
        Standard deviation of the Gaussian noise on ``y``.
    n_test : int
        Examples of an extra test set drawn from the same distribution (0 for none).
    seed : int

    Returns
    -------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    w_true : ndarray, shape (d,)
        Drawn from N(0, 1/d), so that ``X w_true`` has variance about 1.
    X_test : ndarray, shape (n_test, d)
    y_test : ndarray, shape (n_test,)
    """
    rng = np.random.default_rng(seed)
    w_true = rng.normal(0.0, 1.0 / np.sqrt(d), size=d)
    X = rng.normal(size=(n + n_test, d))
    y = X @ w_true + noise * rng.normal(size=n + n_test)
    return X[:n], y[:n], w_true, X[n:], y[n:]


class CVSweep(NamedTuple):
    """Errors of ridge regression for each lambda of a grid.

    Attributes
    ----------
    lams : ndarray, shape (m,)
    cv_error : ndarray, shape (m,)
        Mean validation error over the folds, from the learner's ``choose_lambda_by_cv``.
    train_error : ndarray, shape (m,)
        Mean squared error on the whole training set, fitted on the whole training set.
    test_error : ndarray, shape (m,)
        Mean squared error on the fresh test set, fitted on the whole training set.
    best_lam : float
        The lambda the learner's cross-validation chose.
    """

    lams: np.ndarray
    cv_error: np.ndarray
    train_error: np.ndarray
    test_error: np.ndarray
    best_lam: float


def lambda_sweep(choose_lambda_by_cv: Callable, X, y, X_test, y_test, lams: Sequence[float],
                 k: int = 5) -> CVSweep:
    """Run the learner's cross-validation and compare it with the training and test errors.

    Parameters
    ----------
    choose_lambda_by_cv : callable
        ``best_lam, cv_errors = choose_lambda_by_cv(X, y, lams, k, ridge_fit)``.
    X, y : ndarray, shapes (n, d) and (n,)
        The training set (shuffled already: the folds are contiguous).
    X_test, y_test : ndarray, shapes (n_test, d) and (n_test,)
        A large test set, used only to show what cross-validation estimates.
    lams : sequence of float
    k : int

    Returns
    -------
    CVSweep
    """
    from sklearn.metrics import mean_squared_error

    lams = np.asarray(lams, dtype=np.float64)
    best_lam, cv_error = choose_lambda_by_cv(X, y, lams, k, ridge_fit)
    train_error, test_error = [], []
    for lam in lams:
        w = ridge_fit(X, y, lam)
        train_error.append(mean_squared_error(y, X @ w))
        test_error.append(mean_squared_error(y_test, X_test @ w))
    return CVSweep(lams, np.asarray(cv_error, dtype=np.float64), np.array(train_error),
                   np.array(test_error), float(best_lam))


def plot_cv_sweep(ax, sweep: CVSweep) -> None:
    """Training, cross-validation and test error against lambda (log x), the choice marked."""
    ax.plot(sweep.lams, sweep.train_error, marker=".", color="tab:blue", label="training error")
    ax.plot(sweep.lams, sweep.cv_error, marker="o", color="tab:orange",
            label="k-fold CV error (yours)")
    ax.plot(sweep.lams, sweep.test_error, marker=".", color="tab:green",
            label="test error (fresh data)")
    ax.axvline(sweep.best_lam, color="tab:orange", ls="--", lw=1,
               label=f"chosen lambda = {sweep.best_lam:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("lambda")
    ax.set_ylabel("mean squared error")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
