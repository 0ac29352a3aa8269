"""Driver of the update-rule checks (lessons 03, 04 and 05): a whole trajectory per case.

A check with ``driver=run_update_rule`` compares whole trajectories, not single steps: an
update rule that forgets its state between steps, or counts steps wrongly, agrees on step 1
and drifts after. The same driver runs the learner's function, the reference and every named
mistake, in the notebook and in the grader.
"""

from __future__ import annotations

from collections.abc import Callable

from dlopt.kit.objectives import analytic_gradient
from dlopt.kit.trajectory import follow_rule

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
        (:class:`dlopt.kit.learner.LearnerError`) If the rule changes ``w`` in place, or
        returns something that is not a ``(w_next, state)`` pair with ``w_next`` of ``w``'s
        shape. The loop is :func:`dlopt.kit.trajectory.follow_rule`, the one every experiment
        of the course uses.
    """
    gradient = analytic_gradient(objective)
    objective_kwargs = objective_kwargs or {}
    run = follow_rule(step, w0, lambda w: gradient(w, **objective_kwargs), n_steps, state=state,
                      hyperparameters=hyperparameters)
    return run.points, run.state
