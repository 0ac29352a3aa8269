"""Bridges between a learner's NumPy code and torch.

:func:`numpy_activation` turns an elementwise NumPy function ``f`` and its derivative
``f_grad`` into a torch function with autograd: torch does the backward pass of the linear
layers, and the learner's own ``f_grad`` is used for the activation. Lesson 01's experiments
train networks this way, so they only work with the learner's activations and derivatives.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dlopt.kit.learner import function_name

__all__ = ["numpy_activation"]


def _to_tensor(value, like: torch.Tensor, fn: Callable, x_np: np.ndarray) -> torch.Tensor:
    out = np.asarray(value)
    if out.shape != x_np.shape:
        raise ValueError(f"`{function_name(fn)}` returned shape {out.shape} for an input of "
                         f"shape {x_np.shape}; an elementwise function keeps the shape")
    return torch.from_numpy(np.array(out, dtype=x_np.dtype)).to(like.device)


class _NumpyActivation(torch.autograd.Function):
    """``y = f(x)`` forward, ``dx = dy * f_grad(x)`` backward, both in NumPy."""

    @staticmethod
    def forward(ctx, x, f, f_grad):
        ctx.save_for_backward(x)
        ctx.f_grad = f_grad
        x_np = x.detach().cpu().numpy().copy()  # a copy: f may write into its input
        with torch.enable_grad():  # autograd is off here; f may be built on torch itself
            y = f(x_np)
        return _to_tensor(y, x, f, x_np)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        x_np = x.detach().cpu().numpy().copy()
        with torch.enable_grad():
            slope = ctx.f_grad(x_np)
        return grad_output * _to_tensor(slope, x, ctx.f_grad, x_np), None, None


def numpy_activation(f: Callable, f_grad: Callable) -> Callable:
    """Wrap an elementwise NumPy activation and its derivative as a torch function.

    Parameters
    ----------
    f : callable
        ``f(x) -> y`` on ndarrays of any shape, elementwise (same shape out).
    f_grad : callable
        ``f_grad(x) -> f'(x)`` elementwise, same shape.

    Returns
    -------
    callable
        ``act(t) -> tensor`` for a tensor ``t`` of any shape. Its forward pass calls ``f`` on
        a NumPy copy of ``t``; its backward pass multiplies the incoming gradient by
        ``f_grad`` of ``t`` (the chain rule for an elementwise function). The result has
        ``t``'s shape, dtype and device.

    Examples
    --------
    >>> act = numpy_activation(np.sin, np.cos)
    >>> t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    >>> act(t).sum().backward()
    >>> t.grad
    tensor([1., 1., 1.], dtype=torch.float64)
    """

    def activation(t: torch.Tensor) -> torch.Tensor:
        return _NumpyActivation.apply(t, f, f_grad)

    activation.__name__ = function_name(f)
    return activation


def torch_update_rule(optimizer: str) -> Callable:
    """One step of ``torch.optim.<optimizer>`` with this course's update-rule interface.


    ``w_next, state = rule(w, dw, state, **hyperparameters)``: hyperparameters are the
    constructor's (same names, same defaults); ``state`` uses torch's keys (``step`` as an int,
    buffers as float64 arrays) and may be empty (a fresh optimizer) or carried over.
    """


    def rule(w, dw, state, **hyperparameters):
        import torch


        param = torch.tensor(np.asarray(w, dtype=np.float64), requires_grad=True)
        opt = getattr(torch.optim, optimizer)([param], **hyperparameters)
        if state:
            opt.state[param] = {
                key: (torch.tensor(float(value)) if key == "step" else
                      torch.tensor(np.asarray(value, dtype=np.float64)))
                for key, value in state.items()}
        param.grad = torch.tensor(np.asarray(dw, dtype=np.float64))
        opt.step()
        new_state = {}
        for key, value in opt.state[param].items():
            if value is None:
                continue
            new_state[key] = int(value.item()) if key == "step" else value.detach().numpy().copy()
        return param.detach().numpy().copy(), new_state


    rule.__name__ = f"torch.optim.{optimizer}"
    return rule
