"""Lesson 05: L2 regularization against weight decay, for SGD and for Adam.

The objective is a quadratic bowl from :mod:`dlopt.kit.objectives` whose curvature differs a
lot between coordinates, so that Adam's per-coordinate scaling matters. Optimizers are torch's
(through :func:`dlopt.kit.torch_bridge.torch_update_rule`); the learner's functions supply the
L2 part:

- SGD: the learner's ``sgd_l2_step`` against ``torch.optim.SGD(weight_decay=lam)``;
- Adam: ``torch.optim.Adam`` fed the gradient of the loss *plus* the learner's ``l2_grad``,
  against ``torch.optim.Adam(weight_decay=lam)`` (which is L2 in the loss, despite its name)
  and ``torch.optim.AdamW(weight_decay=lam)`` (decoupled weight decay).

Each run is driven by the course's update-rule loop, :func:`dlopt.kit.trajectory.follow_rule`,
so all trajectories are computed from the same start with the same analytic gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from dlopt.kit.learner import attempt
from dlopt.kit.objectives import quadratic_grad
from dlopt.kit.torch_bridge import torch_update_rule
from dlopt.kit.trajectory import follow_rule

__all__ = [
    "TrajectoryComparison",
    "compare_adam",
    "compare_sgd",
    "plot_final_weights",
    "plot_gaps",
    "ridge_minimizer",
]

_SGD = torch_update_rule("SGD")
_ADAM = torch_update_rule("Adam")
_ADAMW = torch_update_rule("AdamW")


def ridge_minimizer(H: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
    """The minimizer of ``quadratic(w, H, b) + lam/2 ||w||^2``: ``(H + lam I)^{-1} b``.

    Parameters
    ----------
    H : ndarray, shape (n, n), symmetric positive semi-definite
    b : ndarray, shape (n,)
    lam : float

    Returns
    -------
    ndarray, shape (n,)
    """
    H = np.asarray(H, dtype=np.float64)
    return np.linalg.solve(H + lam * np.eye(H.shape[0]), np.asarray(b, dtype=np.float64))


class TrajectoryComparison(NamedTuple):
    """Trajectories of several optimizers on the same problem (what :func:`compare_sgd` and
    :func:`compare_adam` return).

    Attributes
    ----------
    trajectories : dict of str to ndarray, shape (steps + 1, n)
        Label -> the parameters from the start and after every step.
    messages : list of str
        One line per run that could not be made ("implement ... first").
    """

    trajectories: dict
    messages: list


def _gradient(H, b) -> Callable:
    """The gradient of the data loss ``quadratic(w, H, b)``, as a function of ``w``."""
    H, b = np.asarray(H, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return lambda w: quadratic_grad(w, H, b)


def _adam_with_l2(l2_grad: Callable) -> Callable:
    """An update rule: torch's Adam (no weight decay) fed ``dw + l2_grad(w, lam)``."""

    def rule(w, dw, state, *, lr, lam):
        return _ADAM(w, dw + np.asarray(l2_grad(w, lam), dtype=np.float64), state, lr=lr)

    return rule


def compare_sgd(sgd_l2_step: Callable, w0, H, b, *, lr: float, lam: float,
                steps: int = 200) -> TrajectoryComparison:
    """The learner's SGD step with L2 against ``torch.optim.SGD(weight_decay=lam)``.

    Parameters
    ----------
    sgd_l2_step : callable
        ``w_next, state = sgd_l2_step(w, dw, state, lr=lr, lam=lam)``.
    w0 : ndarray, shape (n,)
    H : ndarray, shape (n, n)
    b : ndarray, shape (n,)
        The data loss is ``quadratic(w, H, b) = 1/2 w^T H w - b^T w``.
    lr, lam : float
    steps : int

    Returns
    -------
    TrajectoryComparison
        Labels ``"your sgd_l2_step"`` (when implemented) and
        ``"torch SGD(weight_decay=lam)"``.
    """
    gradient = _gradient(H, b)
    trajectories, messages = {}, []
    result, message = attempt(follow_rule, sgd_l2_step, w0, gradient, steps,
                              hyperparameters={"lr": lr, "lam": lam})
    if message is None:
        trajectories["your sgd_l2_step"] = result.points
    else:
        messages.append(message)
    trajectories["torch SGD(weight_decay=lam)"] = follow_rule(
        _SGD, w0, gradient, steps, hyperparameters={"lr": lr, "weight_decay": lam}).points
    return TrajectoryComparison(trajectories, messages)


def compare_adam(l2_grad: Callable, w0, H, b, *, lr: float, lam: float,
                 steps: int = 500) -> TrajectoryComparison:
    """Adam with L2 in the loss (yours and torch's) against AdamW's decoupled weight decay.

    Parameters
    ----------
    l2_grad : callable
        ``l2_grad(w, lam)``, the gradient of the learner's L2 penalty.
    w0 : ndarray, shape (n,)
    H, b : ndarray
        The data loss is ``quadratic(w, H, b)``.
    lr, lam : float
        Adam's learning rate; the penalty's strength, also given to torch as ``weight_decay``.
    steps : int

    Returns
    -------
    TrajectoryComparison
        Labels ``"Adam + your l2_grad"`` (when implemented), ``"torch Adam(weight_decay=lam)"``
        and ``"torch AdamW(weight_decay=lam)"``.
    """
    gradient = _gradient(H, b)
    trajectories, messages = {}, []
    result, message = attempt(follow_rule, _adam_with_l2(l2_grad), w0, gradient, steps,
                              hyperparameters={"lr": lr, "lam": lam})
    if message is None:
        trajectories["Adam + your l2_grad"] = result.points
    else:
        messages.append(message)
    for label, rule in (("torch Adam(weight_decay=lam)", _ADAM),
                        ("torch AdamW(weight_decay=lam)", _ADAMW)):
        trajectories[label] = follow_rule(
            rule, w0, gradient, steps, hyperparameters={"lr": lr, "weight_decay": lam}).points
    return TrajectoryComparison(trajectories, messages)


def plot_final_weights(ax, finals: dict, *, title: str = "") -> None:
    """Grouped bars: one group per coordinate, one bar per labelled final weight vector.

    Parameters
    ----------
    ax : matplotlib Axes
    finals : dict of str to ndarray, shape (n,)
    title : str
    """
    n_groups = len(next(iter(finals.values()))) if finals else 0
    width = 0.8 / max(len(finals), 1)
    for k, (label, w) in enumerate(finals.items()):
        ax.bar(np.arange(n_groups) + (k - (len(finals) - 1) / 2) * width, w, width=width,
               label=label)
    ax.set_xticks(np.arange(n_groups), [f"w[{i}]" for i in range(n_groups)])
    ax.set_ylabel("final value")
    ax.set_title(title)
    top = max((float(np.max(w)) for w in finals.values()), default=1.0)
    ax.set_ylim(0.0, 1.45 * top)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3, axis="y")


def plot_gaps(ax, gaps: dict) -> None:
    """Horizontal bars of the largest distance between two trajectories (log scale).

    Each bar is labelled with its value; an exact 0 is drawn as a stub at 1e-17.

    Parameters
    ----------
    ax : matplotlib Axes
    gaps : dict of str to float
        Label of a pair -> largest absolute difference over all steps and coordinates.
    """
    labels = list(gaps)
    values = [float(v) for v in gaps.values()]
    ax.barh(np.arange(len(labels)), [max(v, 1e-17) for v in values], color="0.4")
    for i, v in enumerate(values):
        ax.text(max(v, 1e-17) * 3, i, "exactly 0" if v == 0 else f"{v:.1e}", va="center",
                fontsize=8)
    ax.set_yticks(np.arange(len(labels)), labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(1e-18, 1e3)
    ax.set_xlabel("largest |difference| over the trajectory")
    ax.invert_yaxis()
