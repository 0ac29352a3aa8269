"""Lesson 05: L1 against L2 on a sparse regression problem, who gives exact zeros?

The data loss is the least-squares loss
``1/(2n) ||X w - y||^2``, a quadratic ``1/2 w^T H w - b^T w + const`` with ``H = X^T X / n`` and
``b = X^T y / n``, so its gradient comes from :func:`dlopt.kit.objectives.quadratic_grad`. Every
update is made by the learner's own functions:

- L1 by the proximal step (ISTA): ``proximal_l1_step(w, dw, lr=lr, lam=lam)``;
- L1 by subgradient descent: ``sgd_l2_step(w, dw + l1_subgradient(w, lam), state, lr=lr,
  lam=0)`` (a plain gradient step on the loss plus the L1 subgradient);
- L2: ``sgd_l2_step(w, dw, state, lr=lr, lam=lam)``.

The L1 problem is scikit-learn's Lasso (``Lasso(alpha=lam, fit_intercept=False)`` minimizes the
same ``1/(2n) ||X w - y||^2 + lam ||w||_1``): :func:`lasso_solution`, which the experiment
uses as a check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from dlopt.kit import plotting
from dlopt.kit.learner import attempt, attempt_each
from dlopt.kit.objectives import quadratic_grad

__all__ = [
    "METHODS",
    "SparseProblem",
    "SparsityResult",
    "compare_sparsity",
    "lasso_solution",
    "make_sparse_regression",
    "plot_coefficients",
    "plot_shrinkage",
    "plot_zero_counts",
    "shrinkage_curves",
]

#: The three runs of :func:`compare_sparsity`, in drawing order.
METHODS = ("L1, proximal step", "L1, subgradient", "L2")
_COLORS = {"L1, proximal step": "tab:red", "L1, subgradient": "tab:purple", "L2": "tab:blue"}


class SparseProblem(NamedTuple):
    """A regression problem whose true weights are mostly zero.

    Attributes
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    w_true : ndarray, shape (d,)
        ``n_nonzero`` entries of magnitude 1 to 3 with random signs; the others exactly 0.
    H : ndarray, shape (d, d)
        ``X^T X / n``: the data loss is ``1/2 w^T H w - b^T w`` plus a constant.
    b : ndarray, shape (d,)
        ``X^T y / n``.
    """

    X: np.ndarray
    y: np.ndarray
    w_true: np.ndarray
    H: np.ndarray
    b: np.ndarray


def make_sparse_regression(n: int = 100, d: int = 40, n_nonzero: int = 5, noise: float = 0.5,
                           seed: int = 0) -> SparseProblem:
    """Draw ``y = X w_true + noise`` with standard-normal features and a sparse ``w_true``.

    Parameters
    ----------
    n, d : int
        Examples and features.
    n_nonzero : int
        Number of non-zero true weights.
    noise : float
        Standard deviation of the noise on ``y``.
    seed : int

    Returns
    -------
    SparseProblem
    """
    rng = np.random.default_rng(seed)
    w_true = np.zeros(d)
    support = rng.choice(d, size=n_nonzero, replace=False)
    w_true[support] = rng.choice([-1.0, 1.0], size=n_nonzero) * rng.uniform(1.0, 3.0, n_nonzero)
    X = rng.normal(size=(n, d))
    y = X @ w_true + noise * rng.normal(size=n)
    return SparseProblem(X, y, w_true, X.T @ X / n, X.T @ y / n)


class SparsityResult(NamedTuple):
    """What :func:`compare_sparsity` found.

    Attributes
    ----------
    weights : dict of str to ndarray, shape (d,)
        Final weights of each method that could run.
    zeros : dict of str to ndarray, shape (steps + 1,)
        Number of weights exactly equal to 0 after each step (step 0: the start).
    lr : float
    messages : list of str
        One line per method that could not run ("implement ... first").
    """

    weights: dict
    zeros: dict
    lr: float
    messages: list


def _run(update: Callable, w0: np.ndarray, problem: SparseProblem, steps: int):
    w = np.array(w0, dtype=np.float64)
    zeros = [int(np.sum(w == 0.0))]
    for _ in range(steps):
        dw = quadratic_grad(w, problem.H, problem.b)
        w = np.asarray(update(w, dw), dtype=np.float64)
        zeros.append(int(np.sum(w == 0.0)))
    return w, np.array(zeros)


def compare_sparsity(proximal_l1_step: Callable, l1_subgradient: Callable,
                     sgd_l2_step: Callable, problem: SparseProblem, *, lam: float,
                     lam_l2: float | None = None, steps: int = 500, lr: float | None = None,
                     seed: int = 0) -> SparsityResult:
    """Minimize the least-squares loss plus a penalty three ways, with the learner's functions.

    Every run starts from the same small random weights (none exactly 0) and takes ``steps``
    full-batch steps of size ``lr``.

    Parameters
    ----------
    proximal_l1_step : callable
        ``w_next = proximal_l1_step(w, dw, lr=lr, lam=lam)``.
    l1_subgradient : callable
        ``g = l1_subgradient(w, lam)``.
    sgd_l2_step : callable
        ``w_next, state = sgd_l2_step(w, dw, state, lr=lr, lam=lam)``.
    problem : SparseProblem
    lam : float
        Strength of the L1 penalty ``lam ||w||_1``.
    lam_l2 : float, optional
        Strength of the L2 penalty ``lam_l2 / 2 ||w||^2`` (default: ``lam``).
    steps : int
    lr : float, optional
        Step size; default ``1 / L`` with ``L`` the largest eigenvalue of ``H`` (the largest
        step for which gradient descent on the loss is guaranteed to decrease it).
    seed : int
        Seed of the starting weights.

    Returns
    -------
    SparsityResult
    """
    if lr is None:
        lr = 1.0 / float(np.linalg.eigvalsh(problem.H)[-1])
    lam_l2 = lam if lam_l2 is None else lam_l2
    w0 = np.random.default_rng(seed).uniform(-0.1, 0.1, size=problem.H.shape[0])
    updates = {
        "L1, proximal step": lambda w, dw: proximal_l1_step(w, dw, lr=lr, lam=lam),
        "L1, subgradient": lambda w, dw: sgd_l2_step(w, dw + l1_subgradient(w, lam), {},
                                                     lr=lr, lam=0.0)[0],
        "L2": lambda w, dw: sgd_l2_step(w, dw, {}, lr=lr, lam=lam_l2)[0],
    }
    results, messages = attempt_each({name: updates[name] for name in METHODS},
                                     lambda update: _run(update, w0, problem, steps))
    weights = {name: result[0] for name, result in results.items()}
    zeros = {name: result[1] for name, result in results.items()}
    return SparsityResult(weights, zeros, float(lr), messages)


def lasso_solution(problem: SparseProblem, lam: float) -> np.ndarray:
    """The Lasso solution of the same problem, by scikit-learn (coordinate descent, tight
    tolerance): what a proximal L1 method must reach.

    Returns
    -------
    ndarray, shape (d,)
    """
    from sklearn.linear_model import Lasso

    model = Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=100_000)
    return model.fit(problem.X, problem.y).coef_.copy()


def plot_coefficients(ax, w_true: np.ndarray, weights: dict, *, messages=()) -> None:
    """Each method's final weights by index, over the true ones (grey bars)."""
    index = np.arange(len(w_true))
    ax.bar(index, w_true, color="0.85", label="true weights")
    for k, name in enumerate(METHODS):
        if name in weights:
            ax.plot(index + (k - 1) * 0.25, weights[name], ls="", marker="o", ms=3.5,
                    color=_COLORS[name], label=name)
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xlabel("weight index")
    ax.set_ylabel("final weight")
    ax.legend(fontsize=8)
    plotting.show_messages(ax, messages)


def plot_zero_counts(ax, zeros: dict, d: int) -> None:
    """Number of weights exactly 0 after each step, per method."""
    for name in METHODS:
        if name in zeros:
            ax.plot(np.arange(len(zeros[name])), zeros[name], color=_COLORS[name], label=name)
    ax.set_ylim(-1, d + 1)
    ax.set_xlabel("step")
    ax.set_ylabel("weights exactly 0")
    ax.grid(alpha=0.3)
    if zeros:
        ax.legend(fontsize=8)


def shrinkage_curves(soft_threshold: Callable, u: np.ndarray, t: float) -> dict:
    """What each penalty does to one weight ``u`` when the data term is ``1/2 (w - u)^2``.

    The minimizer of ``1/2 (w - u)^2 + t/2 w^2`` is ``u / (1 + t)``: L2 scales every weight
    down and never reaches 0. The minimizer of ``1/2 (w - u)^2 + t |w|`` is the learner's
    ``soft_threshold(u, t)``.

    Parameters
    ----------
    soft_threshold : callable
    u : ndarray, shape (m,)
    t : float

    Returns
    -------
    dict of str to ndarray, shape (m,)
        ``"no penalty"``, ``"L2"`` and, when ``soft_threshold`` runs, ``"L1"``.
    """
    u = np.asarray(u, dtype=np.float64)
    curves = {"no penalty": u.copy(), "L2": u / (1.0 + t)}
    result, _ = attempt(soft_threshold, u.copy(), t)
    if result is not None:
        curves["L1"] = np.asarray(result, dtype=np.float64)
    return curves


def plot_shrinkage(ax, u: np.ndarray, curves: dict, t: float) -> None:
    """The curves of :func:`shrinkage_curves` against ``u``."""
    styles = {"no penalty": ("0.6", ":"), "L2": ("tab:blue", "-"), "L1": ("tab:red", "-")}
    for name, values in curves.items():
        color, ls = styles.get(name, ("k", "-"))
        ax.plot(u, values, color=color, ls=ls, lw=2, label=name)
    ax.axvspan(-t, t, color="tab:red", alpha=0.08, label=f"|u| <= t = {t:g}")
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.set_xlabel("u (the weight the data alone would choose)")
    ax.set_ylabel("regularized weight")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
