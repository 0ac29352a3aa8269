"""Lesson 01: reports that compare derivatives with the learner's own ``numerical_gradient``.

The numerical gradient itself is an exercise of lesson 01 and is not in this package: every
function here takes the learner's ``numerical_gradient(f, x, h)`` as an argument.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from dlopt.kit.learner import attempt, problem_with
from dlopt.kit.objectives import analytic_gradient

__all__ = ["derivative_errors", "derivative_report", "relative_error", "step_size_errors"]


def relative_error(a, b, floor: float = 1e-12) -> float:
    """Norm-wise relative error ``||a - b|| / max(||a|| + ||b||, floor)`` (Euclidean norms).

    About 1e-10 or less means two float64 derivatives agree; 1e-2 means one of them is wrong.
    Norm-wise rather than entry by entry, so that entries near 0 (where a central difference
    keeps an absolute rounding error of about 1e-10) do not dominate. The ``floor`` keeps two
    zero arrays from dividing by zero.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    scale = max(float(np.linalg.norm(a) + np.linalg.norm(b)), floor)
    return float(np.linalg.norm(a - b)) / scale


def derivative_errors(activations: Mapping[str, tuple[Callable, Callable]],
                      numerical_gradient: Callable,
                      x: np.ndarray) -> tuple[dict[str, float], list[str]]:
    """Relative error between each ``f_grad(x)`` and ``numerical_gradient`` of ``sum(f)``.

    For an elementwise ``f``, ``d/dx_i sum_j f(x_j) = f'(x_i)``, so the numerical gradient of
    ``lambda x: np.sum(f(x))`` at ``x`` is the vector of derivatives ``f'(x)``.

    Parameters
    ----------
    activations : mapping of str to (f, f_grad)
    numerical_gradient : callable
        The learner's ``numerical_gradient(f, x, h=1e-5)``.
    x : ndarray
        Where to compare; keep it away from kinks (a central difference across ReLU's kink at
        0 averages the two slopes).

    Returns
    -------
    errors : dict of str to float
        Label -> :func:`relative_error`, for the activations that could be checked.
    messages : list of str
        What could not be checked and why ("implement `tanh_grad` first").
    """
    x = np.asarray(x, dtype=np.float64)
    errors: dict[str, float] = {}
    messages: list[str] = []
    for label, (f, f_grad) in activations.items():
        problems = [p for p in (problem_with(f), problem_with(f_grad)) if p is not None]
        if problems:
            messages.append(f"{label}: {problems[0]}")
            continue
        numerical, message = attempt(numerical_gradient, lambda z, f=f: np.sum(f(z)), x)
        if message is not None:
            return errors, [*messages, message]
        errors[label] = relative_error(f_grad(x), numerical)
    return errors, messages


def derivative_report(activations: Mapping[str, tuple[Callable, Callable]],
                      numerical_gradient: Callable, x: np.ndarray,
                      tol: float = 1e-7) -> str:
    """A printable table of :func:`derivative_errors`, one verdict per activation."""
    errors, messages = derivative_errors(activations, numerical_gradient, x)
    lines = [f"{'activation':<12} {'relative error':>16}   verdict"] if errors else []
    for label, err in errors.items():
        verdict = "agrees" if err < tol else "DISAGREES: check this derivative"
        lines.append(f"{label:<12} {err:>16.2e}   {verdict}")
    lines += messages
    return "\n".join(lines)


def step_size_errors(numerical_gradient: Callable, f: Callable, x: np.ndarray,
                     hs: Sequence[float]) -> np.ndarray:
    """Largest absolute error of ``numerical_gradient(f, x, h)`` for each step ``h``.

    Parameters
    ----------
    numerical_gradient : callable
        The learner's ``numerical_gradient(f, x, h)``.
    f : callable
        A function from :mod:`dlopt.kit.objectives` (its analytic gradient is the reference).
    x : ndarray
    hs : sequence of float

    Returns
    -------
    ndarray, shape (len(hs),)
    """
    exact = analytic_gradient(f)(x)
    return np.array([np.max(np.abs(numerical_gradient(f, np.array(x, dtype=np.float64), h)
                                   - exact)) for h in hs])
