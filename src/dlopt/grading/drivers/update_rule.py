"""Drivers: call a learner's function many times, the way a check needs it.

A check with ``driver=run_update_rule`` compares whole trajectories, not single steps: an
update rule that forgets its state between steps, or counts steps wrongly, agrees on step 1
and drifts after. The same driver runs the learner's function, the reference and every named
mistake, in the notebook and in the grader.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from dlopt.kit.learner import function_name
from dlopt.kit.objectives import analytic_gradient

__all__ = ["run_update_rule"]


def run_update_rule(step: Callable, w0, objective: Callable, n_steps: int = 100,
                    state: dict | None = None, objective_kwargs: dict | None = None,
                    **hyperparameters):
    """Minimise ``objective`` from ``w0`` with ``n_steps`` calls of an update rule.

    Each step computes ``dw`` with the objective's analytic gradient at the current ``w`` and
    calls ``w, state = step(w, dw, state, **hyperparameters)``, feeding the returned state to
    the next call (the interface of every update rule in this course).

    Parameters
    ----------
    step : callable
        ``w_next, state = step(w, dw, state, **hyperparameters)``.
    w0 : ndarray
        Starting parameters (not modified).
    objective : callable
        A function of :mod:`dlopt.kit.objectives` (its analytic gradient gives ``dw``).
    n_steps : int
    state : dict, optional
        Starting state (copied); empty for a fresh optimizer.
    objective_kwargs : dict, optional
        Extra arguments of the objective, e.g. ``{"H": H}`` for a quadratic.

    Returns
    -------
    trajectory : ndarray, shape (n_steps + 1, *w0.shape)
        ``w0`` and the parameters after each step, as float64.
    state : dict
        The state after the last step.

    Raises
    ------
    ValueError
        If the rule changes ``w`` in place, or returns something that is not a
        ``(w_next, state)`` pair with ``w_next`` of ``w``'s shape.
    """
    gradient = analytic_gradient(objective)
    objective_kwargs = objective_kwargs or {}
    name = function_name(step)
    w = np.array(w0, dtype=np.float64)
    state = copy.deepcopy(state) if state else {}
    trajectory = [w.copy()]
    for t in range(n_steps):
        dw = gradient(w, **objective_kwargs)
        before = w.copy()
        result = step(w, dw.copy(), state, **hyperparameters)
        if not np.array_equal(w, before, equal_nan=True):
            raise ValueError(f"{name} changed w in place at step {t + 1}; return a new array "
                             f"(w - lr * ..., not w -= ...)")
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise ValueError(f"{name} must return a pair (w_next, state) with state a dict; "
                             f"got {type(result).__name__} at step {t + 1}")
        w_next, state = result
        w_next = np.asarray(w_next, dtype=np.float64)
        if w_next.shape != w.shape:
            raise ValueError(f"{name} returned w of shape {w_next.shape} at step {t + 1}; "
                             f"expected {w.shape}")
        w = w_next
        trajectory.append(w.copy())
    return np.stack(trajectory), state
