"""Trusted references for checks, built on torch and autograd, never on our own formulas.

Each helper turns a torch function into a NumPy function with the signature of the exercise,
so an :class:`dlopt.grading.Exercise` can use it as ``reference``. Computation is in float64;
the result has the input's shape.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["torch_derivative", "torch_function", "torch_jvp"]


def _tensor(x, requires_grad: bool = False):
    import torch

    return torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=requires_grad)


def torch_function(fn: Callable) -> Callable:
    """``x -> fn(torch.tensor(x)).numpy()``; extra keyword arguments are passed to ``fn``."""

    def reference(x, *args, **kwargs):
        return fn(_tensor(x), *args, **kwargs).detach().numpy()

    return reference


def torch_derivative(fn: Callable) -> Callable:
    """Elementwise derivative ``f'(x)`` of an elementwise torch function, by autograd.

    At kinks (ReLU at 0) this returns the value PyTorch's backward uses.
    """

    def reference(x, *args, **kwargs):
        import torch

        with torch.enable_grad():  # also inside torch.no_grad() or a custom Function
            t = _tensor(x, requires_grad=True)
            fn(t, *args, **kwargs).sum().backward()
        return t.grad.numpy()

    return reference


def torch_jvp(fn: Callable) -> Callable:
    """Jacobian-vector product ``J_f(x) @ v`` (applied along the function's axis), by autograd."""

    def reference(x, v, *args, **kwargs):
        import torch

        # The double-backward trick: J v = d/du <J^T u, v>, using reverse mode only.
        with torch.enable_grad():
            t = _tensor(x, requires_grad=True)
            y = fn(t, *args, **kwargs)
            u = torch.zeros_like(y, requires_grad=True)
            (vjp,) = torch.autograd.grad(y, t, u, create_graph=True)
            (jvp,) = torch.autograd.grad(vjp, u, _tensor(v))
        return jvp.detach().numpy()

    return reference


