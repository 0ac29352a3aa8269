"""Scalar test functions f: R^n -> R with analytic gradients, for NumPy arrays and torch tensors.

Used by lesson 01 (the ``f`` of a gradient check), lessons 03, 04 and 05 (landscapes for the
update rules, their checks and explorers, through :mod:`dlopt.kit.surfaces`), and lesson 08
(the ``f`` of the Hessian-vector product exercise, as torch tensors). Two families:

- **Point functions** (:func:`quadratic`, :func:`rosenbrock`, :func:`himmelblau`): ``x`` has
  shape ``(..., n)``. The last axis holds the coordinates of a point; leading axes, if any, are
  a batch (a grid of points for a contour plot). The value has shape ``(...)``: a 0-d float for
  a single point of shape ``(n,)``.
- **Array functions** (:func:`sum_of_sines`, :func:`wavy_bowl`): ``x`` is an array of any
  shape and the value is one float, as for the loss of a weight matrix.

Every function ``f`` has its gradient ``f_grad`` with the shape of ``x``;
:func:`analytic_gradient` finds it from ``f``. The functions themselves (not the gradients)
also take a torch tensor and then compute with torch, so that autograd can differentiate them
(twice, for a Hessian-vector product): the value is then a tensor, 0-d for one point.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

__all__ = [
    "analytic_gradient",
    "himmelblau",
    "himmelblau_grad",
    "quadratic",
    "quadratic_grad",
    "rosenbrock",
    "rosenbrock_grad",
    "sum_of_sines",
    "sum_of_sines_grad",
    "wavy_bowl",
    "wavy_bowl_grad",
]


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported
    return torch is not None and isinstance(x, torch.Tensor)


def _points(x, min_n: int = 1, exact_n: int | None = None):
    if not _is_tensor(x):
        x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        raise ValueError("x must have at least one axis: shape (..., n)")
    n = x.shape[-1]
    if exact_n is not None and n != exact_n:
        raise ValueError(f"x must have shape (..., {exact_n}), got {x.shape}")
    if n < min_n:
        raise ValueError(f"x must have at least {min_n} coordinates on its last axis, "
                         f"got shape {x.shape}")
    return x


def _quadratic_terms(x, H, b):
    x = _points(x)
    n = x.shape[-1]
    if _is_tensor(x):
        import torch

        like = {"dtype": x.dtype, "device": x.device}
        H = torch.eye(n, **like) if H is None else torch.as_tensor(H, **like)
        b = torch.zeros(n, **like) if b is None else torch.as_tensor(b, **like)
    else:
        H = np.eye(n) if H is None else np.asarray(H, dtype=np.float64)
        b = np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)
    if tuple(H.shape) != (n, n) or tuple(b.shape) != (n,):
        raise ValueError(f"for x of shape (..., {n}), H must be ({n}, {n}) and b ({n},); "
                         f"got {H.shape} and {b.shape}")
    return x, H, b


def quadratic(x, H=None, b=None) -> np.ndarray:
    """Quadratic bowl ``f(x) = 1/2 x^T H x - b^T x``.

    Parameters
    ----------
    x : ndarray, shape (..., n)
        Points, coordinates on the last axis (or a torch tensor).
    H : ndarray, shape (n, n), optional
        Curvature matrix (the Hessian when symmetric). Default: the identity.
    b : ndarray, shape (n,), optional
        Linear term. Default: zeros, so the minimum is at 0.

    Returns
    -------
    ndarray, shape (...)
    """
    x, H, b = _quadratic_terms(x, H, b)
    einsum = sys.modules["torch"].einsum if _is_tensor(x) else np.einsum
    return 0.5 * einsum("...i,ij,...j->...", x, H, x) - x @ b


def quadratic_grad(x, H=None, b=None) -> np.ndarray:
    """Gradient of :func:`quadratic`: ``1/2 (H + H^T) x - b``, shape (..., n)."""
    x, H, b = _quadratic_terms(x, H, b)
    return x @ (0.5 * (H + H.T)).T - b


def rosenbrock(x, a: float = 1.0, b: float = 100.0) -> np.ndarray:
    """Rosenbrock's banana valley ``sum_i b (x[i+1] - x[i]**2)**2 + (a - x[i])**2``.

    The minimum is 0 at ``x = (a, a**2, ...)``: ``(1, 1)`` in 2-D with the defaults. The valley
    is curved and narrow, with a curvature that differs by a factor of about 2500 across it at
    the minimum, which makes it a hard test for optimizers.

    Parameters
    ----------
    x : ndarray, shape (..., n), n >= 2
        (or a torch tensor)
    a, b : float

    Returns
    -------
    ndarray, shape (...)
    """
    x = _points(x, min_n=2)
    head, tail = x[..., :-1], x[..., 1:]
    return (b * (tail - head**2) ** 2 + (a - head) ** 2).sum(-1)


def rosenbrock_grad(x, a: float = 1.0, b: float = 100.0) -> np.ndarray:
    """Gradient of :func:`rosenbrock`, shape (..., n)."""
    x = _points(x, min_n=2)
    head, tail = x[..., :-1], x[..., 1:]
    ridge = tail - head**2
    grad = np.zeros_like(x)
    grad[..., :-1] += -4.0 * b * head * ridge - 2.0 * (a - head)
    grad[..., 1:] += 2.0 * b * ridge
    return grad


def himmelblau(x) -> np.ndarray:
    """Himmelblau's function ``(x**2 + y - 11)**2 + (x + y**2 - 7)**2``.

    Four minima of value 0, one of them at ``(3, 2)``; a local maximum near ``(-0.27, -0.92)``.
    Which minimum an optimizer reaches depends on where it starts.

    Parameters
    ----------
    x : ndarray, shape (..., 2)
        (or a torch tensor)

    Returns
    -------
    ndarray, shape (...)
    """
    x = _points(x, exact_n=2)
    u, v = x[..., 0], x[..., 1]
    return (u**2 + v - 11.0) ** 2 + (u + v**2 - 7.0) ** 2


def himmelblau_grad(x) -> np.ndarray:
    """Gradient of :func:`himmelblau`, shape (..., 2)."""
    x = _points(x, exact_n=2)
    u, v = x[..., 0], x[..., 1]
    p = u**2 + v - 11.0
    q = u + v**2 - 7.0
    return np.stack([4.0 * u * p + 2.0 * q, 2.0 * p + 4.0 * v * q], axis=-1)


def sum_of_sines(x) -> float:
    """``sum(sin(x))`` over all entries of ``x`` (any shape): separable, so each partial
    derivative depends on its own entry only.

    Parameters
    ----------
    x : ndarray, any shape (or a torch tensor)

    Returns
    -------
    float
        A 0-d tensor for a tensor ``x``.
    """
    if _is_tensor(x):
        return sys.modules["torch"].sin(x).sum()
    return float(np.sum(np.sin(np.asarray(x, dtype=np.float64))))


def sum_of_sines_grad(x) -> np.ndarray:
    """Gradient of :func:`sum_of_sines`: ``cos(x)``, with the shape of ``x``."""
    return np.cos(np.asarray(x, dtype=np.float64))


def wavy_bowl(x) -> float:
    """``1/2 sum(x**2) + sin(sum(x))`` over all entries of ``x`` (any shape).

    A bowl with ripples along the diagonal. Every entry appears in the sine, so it is not
    separable: each partial derivative depends on all the entries. Takes and returns what
    :func:`sum_of_sines` does: one float for an array, a 0-d tensor for a tensor.
    """
    if _is_tensor(x):
        return 0.5 * (x**2).sum() + sys.modules["torch"].sin(x.sum())
    x = np.asarray(x, dtype=np.float64)
    return float(0.5 * np.sum(x**2) + np.sin(np.sum(x)))


def wavy_bowl_grad(x) -> np.ndarray:
    """Gradient of :func:`wavy_bowl`: ``x + cos(sum(x))``, with the shape of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    return x + np.cos(np.sum(x))


_GRADIENTS: dict[Callable, Callable] = {
    quadratic: quadratic_grad,
    rosenbrock: rosenbrock_grad,
    himmelblau: himmelblau_grad,
    sum_of_sines: sum_of_sines_grad,
    wavy_bowl: wavy_bowl_grad,
}


def analytic_gradient(f: Callable) -> Callable:
    """The analytic gradient function of one of this module's functions.

    >>> analytic_gradient(rosenbrock) is rosenbrock_grad
    True

    Raises
    ------
    KeyError
        If ``f`` is not one of this module's functions.
    """
    try:
        return _GRADIENTS[f]
    except (KeyError, TypeError):
        known = ", ".join(g.__name__ for g in _GRADIENTS)
        raise KeyError(f"no analytic gradient for {f!r}; known functions: {known}") from None
