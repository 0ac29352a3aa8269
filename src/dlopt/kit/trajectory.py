"""The one loop that runs an update rule: every step, every check, every stopping rule.

Used by lesson 03's convergence explorer, lesson 04's experiments and schedule explorer, and
the grading driver :func:`dlopt.grading.drivers.update_rule.run_update_rule` (lessons 03, 04
and 05's checks).

Every update rule of the course has the interface::

    w_next, state = rule(w, dw, state, *, lr=..., <hyperparameters>)

:func:`follow_rule` calls it step after step from a start point, with the gradient of an
objective (plus Gaussian noise, if asked, as a stand-in for mini-batches) and one learning rate
per step or fixed hyperparameters, and returns a :class:`Trajectory`. A rule that changes
``w`` in place, or returns something other than ``(w_next, state)`` with ``w_next`` of ``w``'s
shape, raises :class:`dlopt.kit.learner.LearnerError` with the step number; a run can be
stopped early by a test of the new point (left the plot, stopped being finite).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dlopt.kit.learner import LearnerError, function_name

__all__ = ["Trajectory", "follow_rule", "not_finite"]


@dataclass(frozen=True)
class Trajectory:
    """Where an update rule went.

    Attributes
    ----------
    points : ndarray, shape (k + 1, *w0.shape), float64
        The start and the parameters after each completed step (``k`` steps; fewer than
        asked when the run was stopped).
    state : dict
        The rule's state after the last step it took (the stopping step included).
    stopped_at : int or None
        The step whose result met the stopping test (its point is not in ``points``).
    stopped_point : ndarray or None
        That step's result (to tell a divergence from leaving a bounded view).
    states : list of dict
        A copy of the state after each completed step, when asked for; else empty.
    """

    points: np.ndarray
    state: dict
    stopped_at: int | None = None
    stopped_point: np.ndarray | None = None
    states: list = field(default_factory=list, repr=False)


def not_finite(w: np.ndarray) -> bool:
    """A stopping test: True once ``w`` holds an infinity or a nan."""
    return not np.isfinite(w).all()


def follow_rule(rule: Callable, w0, gradient: Callable, steps: int | None = None, *,
                lrs: Sequence[float] | None = None, state: Mapping | None = None,
                hyperparameters: Mapping | None = None, noise: float = 0.0, seed: int = 0,
                stop: Callable[[np.ndarray], bool] | None = None,
                keep_states: bool = False) -> Trajectory:
    """Run an update rule from ``w0``: ``w, state = rule(w, gradient(w), state, **kwargs)``.

    Parameters
    ----------
    rule : callable
        ``w_next, state = rule(w, dw, state, **hyperparameters)``, typically a learner's.
    w0 : array_like
        The start (copied; float64).
    gradient : callable
        ``gradient(w) -> dw`` of ``w``'s shape.
    steps : int, optional
        Number of steps; ``len(lrs)`` when ``lrs`` is given.
    lrs : sequence of float, optional
        The learning rate of each step, passed as ``lr=lrs[t - 1]`` at step ``t`` (the first
        update uses ``lrs[0]``, as a torch scheduler stepped after each ``optimizer.step()``).
    state : mapping, optional
        The starting state (deep-copied); empty for a fresh optimizer.
    hyperparameters : mapping, optional
        Keyword arguments of every call (``lr``, ``betas``, ``weight_decay``, ...).
    noise : float
        Standard deviation of Gaussian noise added to every gradient entry, drawn from
        ``numpy.random.default_rng(seed)`` as one array of shape ``(steps, *w0.shape)``.
    seed : int
    stop : callable, optional
        ``stop(w_next) -> bool``: True ends the run at that step (see :func:`not_finite`).
    keep_states : bool
        Record a deep copy of the state after every completed step.

    Returns
    -------
    Trajectory

    Raises
    ------
    dlopt.kit.learner.LearnerError
        If the rule changes ``w`` in place, or does not return ``(w_next, state)`` with
        ``state`` a dict and ``w_next`` of ``w``'s shape.
    Exception
        Whatever the rule itself raises (``NotImplementedError`` from a stub) propagates.
    """
    w = np.array(w0, dtype=np.float64)
    shape = w.shape
    if lrs is not None:
        lrs = np.asarray(lrs, dtype=np.float64).reshape(-1)
        steps = lrs.size
    elif steps is None:
        raise TypeError("follow_rule needs steps or lrs")
    steps = int(steps)
    hyperparameters = dict(hyperparameters or {})
    noises = (np.random.default_rng(seed).normal(size=(steps, *shape)) * noise
              if noise else None)
    state = copy.deepcopy(dict(state)) if state else {}
    points = np.empty((steps + 1, *shape))
    points[0] = w
    states: list = []
    stopped_at = stopped_point = None
    with np.errstate(all="ignore"):
        for t in range(1, steps + 1):
            dw = np.asarray(gradient(w), dtype=np.float64)
            if noises is not None:
                dw = dw + noises[t - 1]
            if lrs is not None:
                hyperparameters["lr"] = float(lrs[t - 1])
            result = rule(w, dw, state, **hyperparameters)
            if w.tobytes() != points[t - 1].tobytes():  # bit for bit: nan stays nan
                raise LearnerError(f"`{function_name(rule)}` changed w in place at step {t}; "
                                   f"return a new array (w - lr * ..., not w -= ...)")
            if not (isinstance(result, tuple) and len(result) == 2
                    and isinstance(result[1], dict)):
                raise LearnerError(f"`{function_name(rule)}` must return a pair (w_next, state) "
                                   f"with state a dict; got {type(result).__name__} at step {t}")
            w_next, state = result
            w_next = np.asarray(w_next, dtype=np.float64)
            if w_next.shape != shape:
                raise LearnerError(f"`{function_name(rule)}` returned w of shape "
                                   f"{w_next.shape} at step {t}; expected {shape}")
            if stop is not None and stop(w_next):
                stopped_at, stopped_point = t, w_next.copy()
                break
            points[t] = w = w_next
            if keep_states:
                states.append(copy.deepcopy(state))
    end = steps + 1 if stopped_at is None else stopped_at
    return Trajectory(points[:end].copy() if end < steps + 1 else points, state, stopped_at,
                      stopped_point, states)
