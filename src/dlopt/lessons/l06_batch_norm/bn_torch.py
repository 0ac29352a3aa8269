"""A learner's NumPy batch norm as a torch operation with autograd (lesson 06).

:func:`numpy_batchnorm` wraps ``batchnorm_forward`` and ``batchnorm_backward`` (the course's
interface, see :mod:`dlopt_instructor.batch_norm`) in a ``torch.autograd.Function``: torch does the
linear layers and the optimizer, and the learner's own code normalizes in the forward pass
and backpropagates through the normalization in the backward pass. Lesson 06's experiments
train networks this way, so they only work with the learner's functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dlopt.kit.learner import function_name

__all__ = ["numpy_batchnorm"]


def _tensor(value, shape, like: torch.Tensor, fn: Callable, what: str) -> torch.Tensor:
    array = np.asarray(value)
    if array.shape != tuple(shape):
        raise ValueError(f"`{function_name(fn)}` returned {what} of shape {array.shape}; "
                         f"expected {tuple(shape)}")
    return torch.from_numpy(np.array(array, dtype=np.float64)).to(like.dtype)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()  # a copy: the learner may write into it


class _NumpyBatchNorm(torch.autograd.Function):
    """Training-mode batch norm: the learner's forward, then the learner's backward."""

    @staticmethod
    def forward(ctx, x, gamma, beta, forward, backward, state, momentum, eps):
        with np.errstate(all="ignore"):  # a diverging network feeds inf and nan: no warnings
            out, cache = forward(_numpy(x), _numpy(gamma), _numpy(beta), state, train=True,
                                 momentum=momentum, eps=eps)
        ctx.cache = cache
        ctx.backward_fn = backward
        ctx.shapes = (x.shape, gamma.shape)
        return _tensor(out, x.shape, x, forward, "out")

    @staticmethod
    def backward(ctx, dout):
        x_shape, gamma_shape = ctx.shapes
        with np.errstate(all="ignore"):
            dx, dgamma, dbeta = ctx.backward_fn(_numpy(dout), ctx.cache)
        ctx.cache = None  # free the cache once used, as torch frees saved tensors
        fn = ctx.backward_fn
        return (_tensor(dx, x_shape, dout, fn, "dx"),
                _tensor(dgamma, gamma_shape, dout, fn, "dgamma"),
                _tensor(dbeta, gamma_shape, dout, fn, "dbeta"), None, None, None, None, None)


def numpy_batchnorm(forward: Callable, backward: Callable) -> Callable:
    """Wrap a NumPy batch-norm forward and backward pass as a torch function.

    Parameters
    ----------
    forward : callable
        ``out, cache = forward(x, gamma, beta, state, *, train, momentum, eps)`` on arrays
        ``x`` (N, D), ``gamma`` and ``beta`` (D,); updates ``state`` in place in training mode.
    backward : callable
        ``dx, dgamma, dbeta = backward(dout, cache)``.

    Returns
    -------
    callable
        ``bn(t, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5) -> tensor`` for a
        tensor ``t`` of shape (N, D) and tensors ``gamma``, ``beta`` of shape (D,). In training
        mode the result is differentiable with respect to ``t``, ``gamma`` and ``beta`` (the
        gradients come from ``backward``); in evaluation mode it is a constant (no gradient),
        computed by ``forward(..., train=False)``. The result has ``t``'s dtype, on the CPU.

    Examples
    --------
    >>> from dlopt_instructor.batch_norm import torch_batchnorm_backward, torch_batchnorm_forward
    >>> bn = numpy_batchnorm(torch_batchnorm_forward, torch_batchnorm_backward)
    >>> t = torch.tensor([[1.0, 2.0], [3.0, 6.0]], dtype=torch.float64, requires_grad=True)
    >>> ones = torch.ones(2, dtype=torch.float64)
    >>> bn(t, ones, 0 * ones, {}).round(decimals=3)
    tensor([[-1.0000, -1.0000],
            [ 1.0000,  1.0000]], dtype=torch.float64, grad_fn=<RoundBackward1>)
    """

    def bn(t: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, state: dict, *,
           train: bool = True, momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
        if train:
            return _NumpyBatchNorm.apply(t, gamma, beta, forward, backward, state, momentum,
                                         eps)
        with np.errstate(all="ignore"):
            out, _ = forward(_numpy(t), _numpy(gamma), _numpy(beta), state, train=False,
                             momentum=momentum, eps=eps)
        return _tensor(out, t.shape, t, forward, "out")

    bn.__name__ = function_name(forward)
    return bn
