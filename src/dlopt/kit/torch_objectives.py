"""The test functions of :mod:`dlopt.kit.objectives`, written with torch operations.

Same formulas, same names, but built from torch operations so that autograd can differentiate
them (twice, for a Hessian-vector product). Each takes one tensor ``w`` and returns a 0-d
tensor: a scalar loss. Lesson 08 passes them as the ``f`` of its autograd exercise; the tests
check that each one equals its NumPy twin.
"""

from __future__ import annotations

import torch

__all__ = ["himmelblau", "quadratic", "rosenbrock", "sum_of_sines", "wavy_bowl"]


def rosenbrock(w: torch.Tensor, a: float = 1.0, b: float = 100.0) -> torch.Tensor:
    """``sum_i b (w[i+1] - w[i]**2)**2 + (a - w[i])**2`` for ``w`` of shape (n,), n >= 2."""
    head, tail = w[:-1], w[1:]
    return torch.sum(b * (tail - head**2) ** 2 + (a - head) ** 2)


def himmelblau(w: torch.Tensor) -> torch.Tensor:
    """``(u**2 + v - 11)**2 + (u + v**2 - 7)**2`` for ``w = (u, v)`` of shape (2,)."""
    u, v = w[0], w[1]
    return (u**2 + v - 11.0) ** 2 + (u + v**2 - 7.0) ** 2


def quadratic(w: torch.Tensor) -> torch.Tensor:
    """``1/2 w^T w``, the bowl with the identity as its Hessian, for ``w`` of shape (n,)."""
    return 0.5 * torch.sum(w * w)


def sum_of_sines(w: torch.Tensor) -> torch.Tensor:
    """``sum(sin(w))`` over every entry of ``w`` (any shape)."""
    return torch.sum(torch.sin(w))


def wavy_bowl(w: torch.Tensor) -> torch.Tensor:
    """``1/2 sum(w**2) + sin(sum(w))`` over every entry of ``w`` (any shape)."""
    return 0.5 * torch.sum(w**2) + torch.sin(torch.sum(w))
