"""Lesson 06: a learner's NumPy batch norm as a torch operation with autograd.

:func:`numpy_batchnorm` wraps ``batchnorm_forward`` and ``batchnorm_backward`` (the course's
interface, see :mod:`dlopt_instructor.batch_norm`) with the course's one NumPy-to-autograd
bridge, :func:`dlopt.kit.torch_bridge.autograd_function`: torch does the linear layers and the
optimizer, and the learner's own code normalizes in the forward pass and backpropagates
through the normalization in the backward pass. Lesson 06's experiments train networks this
way, so they only work with the learner's functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dlopt.kit.learner import function_name
from dlopt.kit.torch_bridge import as_learner_array, autograd_function

__all__ = ["numpy_batchnorm"]


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
    names = (function_name(forward), function_name(backward))

    def training_forward(x, gamma, beta, options):
        return forward(x, gamma, beta, options["state"], train=True,
                       momentum=options["momentum"], eps=options["eps"])

    function = autograd_function(training_forward, backward, name="NumpyBatchNorm", numpy=True,
                                 input_names=("x", "gamma", "beta"), blame=names)

    def bn(t: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, state: dict, *,
           train: bool = True, momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
        if train:
            return function.apply(t, gamma, beta,
                                  {"state": state, "momentum": momentum, "eps": eps})
        arrays = (tensor.detach().cpu().numpy().copy() for tensor in (t, gamma, beta))
        with np.errstate(all="ignore"):  # a diverging network feeds inf and nan: no warnings
            out, _ = forward(*arrays, state, train=False, momentum=momentum, eps=eps)
        return torch.from_numpy(as_learner_array(out, t.shape, fn=forward, what="out")).to(
            t.dtype)

    bn.__name__ = names[0]
    return bn
