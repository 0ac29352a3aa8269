"""Lesson 03: exploding gradients and gradient clipping, with the learner's ``clip_grad_norm``.

Gradient descent on Rosenbrock's valley from a point on its steep wall, where the gradient is
thousands of times larger than near the minimum. Each step computes the gradient, optionally
clips it with the learner's ``clip_grad_norm([dw], max_norm)`` (a list of one array: the
course's interface takes one array per parameter), and takes the learner's ``sgd_step``. Without
clipping the first steps overshoot to ever steeper places and the run overflows; with clipping
every step is at most ``lr * max_norm`` long until the iterate is in the valley, where the
gradient is small and the clip no longer acts.

Nothing here implements ``clip_grad_norm``: the experiment calls the learner's function and
checks only that it returns a pair it can use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dlopt.kit import plotting
from dlopt.kit.learner import LearnerError, function_name
from dlopt.kit.objectives import rosenbrock, rosenbrock_grad

__all__ = ["VIEW", "ClipRun", "clipping_runs", "plot_clipping"]

#: The box the paths are drawn in: (x range, y range).
VIEW = ((-2.0, 2.0), (-1.0, 3.0))


@dataclass(frozen=True)
class ClipRun:
    """One gradient-descent run, with or without clipping.

    Attributes
    ----------
    max_norm : float or None
        The clipping threshold; None for no clipping.
    points : ndarray, shape (T + 1, 2)
        The iterates, the start first; a diverged run stops at its last finite point.
    losses : ndarray, shape (T + 1,)
        f at each iterate.
    norms : ndarray, shape (T,)
        The gradient's norm at each step, before clipping.
    clipped : ndarray of bool, shape (T,)
        Whether the clip changed the gradient at that step.
    diverged_at : int or None
        The step at which f stopped being finite (the run was stopped there), or None.
    """

    max_norm: float | None
    points: np.ndarray
    losses: np.ndarray
    norms: np.ndarray
    clipped: np.ndarray
    diverged_at: int | None

    @property
    def label(self) -> str:
        return "no clipping" if self.max_norm is None else f"max_norm = {self.max_norm:g}"


def _clip(clip_grad_norm: Callable, dw: np.ndarray, max_norm: float, step: int):
    result = clip_grad_norm([dw.copy()], max_norm)
    name = function_name(clip_grad_norm)
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise LearnerError(f"`{name}` must return a pair (clipped, total_norm); got "
                           f"{type(result).__name__} at step {step}")
    clipped, _ = result
    if not (isinstance(clipped, (tuple, list)) and len(clipped) == 1
            and np.shape(clipped[0]) == dw.shape):
        raise LearnerError(f"`{name}` must return the clipped gradients as a list with one array "
                           f"per input array, of the same shapes (step {step})")
    return np.asarray(clipped[0], dtype=np.float64)


def clipping_runs(clip_grad_norm: Callable, sgd_step: Callable,
                  max_norms: Sequence[float | None], *, start=(-2.0, -1.0), lr: float = 1.5e-3,
                  steps: int = 3000) -> list[ClipRun]:
    """Gradient descent on Rosenbrock from ``start``, once per threshold in ``max_norms``.

    Parameters
    ----------
    clip_grad_norm : callable
        The learner's ``clip_grad_norm(grads, max_norm) -> (clipped, total_norm)``.
    sgd_step : callable
        The learner's ``sgd_step(w, dw, state, *, lr) -> (w_next, state)``.
    max_norms : sequence of float or None
        None runs plain gradient descent (``clip_grad_norm`` is not called).
    start : pair of float
    lr : float
    steps : int

    Returns
    -------
    list of ClipRun, one per entry of ``max_norms``, in order.
    """
    runs = []
    for max_norm in max_norms:
        w, state = np.array(start, dtype=np.float64), {}
        points, losses, norms, clipped = [w], [float(rosenbrock(w))], [], []
        diverged = None
        with np.errstate(all="ignore"):
            for t in range(1, steps + 1):
                dw = rosenbrock_grad(w)
                norms.append(float(np.linalg.norm(dw)))
                if max_norm is not None:
                    dw_used = _clip(clip_grad_norm, dw, max_norm, t)
                    clipped.append(not np.array_equal(dw_used, dw))
                else:
                    dw_used = dw
                    clipped.append(False)
                w, state = sgd_step(w, dw_used, state, lr=lr)
                w = np.asarray(w, dtype=np.float64)
                loss = float(rosenbrock(w))
                if not (np.all(np.isfinite(w)) and np.isfinite(loss)):
                    diverged = t
                    break
                points.append(w)
                losses.append(loss)
        runs.append(ClipRun(max_norm, np.array(points), np.array(losses), np.array(norms),
                            np.array(clipped, dtype=bool), diverged))
    return runs


def plot_clipping(ax_path, ax_loss, runs: Sequence[ClipRun]) -> None:
    """Left: the paths on Rosenbrock's contours; right: f per step, log scale (a cross where a
    run overflowed)."""
    (x0, x1), (y0, y1) = VIEW
    X, Y = np.meshgrid(np.linspace(x0, x1, 160), np.linspace(y0, y1, 160))
    Z = rosenbrock(np.stack([X, Y], axis=-1))
    ax_path.contour(X, Y, Z, levels=np.geomspace(1e-2, Z.max(), 16), cmap="viridis",
                    linewidths=0.7)
    ax_path.plot(1.0, 1.0, marker="*", ms=10, color="k", ls="none")
    for i, run in enumerate(runs):
        color = plotting.color_at(i)
        ax_path.plot(run.points[:, 0], run.points[:, 1], color=color, lw=1.2, label=run.label)
        ax_path.plot(*run.points[0], marker="o", ms=5, color=color, ls="none")
        ax_loss.semilogy(np.arange(len(run.losses)), np.maximum(run.losses, 1e-16), color=color,
                         lw=1.3, label=run.label)
        if run.diverged_at is not None:
            ax_loss.plot(len(run.losses) - 1, run.losses[-1], marker="x", ms=9, color=color)
    ax_path.set(xlim=VIEW[0], ylim=VIEW[1], xlabel="x", ylabel="y", title="Rosenbrock")
    ax_path.legend(fontsize=8, loc="upper left")
    ax_loss.set(xlabel="step", ylabel="f(w)", title="gradient descent, lr = 1.5e-3")
    ax_loss.legend(fontsize=8)
