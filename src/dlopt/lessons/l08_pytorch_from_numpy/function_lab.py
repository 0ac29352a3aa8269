"""Lesson 08: a deliberately wrong autograd Function built from the learner's own, for gradcheck.

:func:`forgets_grad_output` wraps an elementwise autograd Function (the learner's ``Sigmoid``)
into one with the same forward pass whose backward returns the local derivative alone, without
multiplying by ``grad_output``: the classic chain-rule slip. ``torch.autograd.gradcheck``
catches it, which the lesson shows next to the learner's correct Functions. The derivative is
obtained from the learner's own backward (called with a ``grad_output`` of ones), so no formula
is written here.
"""

from __future__ import annotations

import torch

from dlopt.kit.torch_bridge import autograd_function

__all__ = ["forgets_grad_output"]


def forgets_grad_output(function) -> type:
    """An autograd Function: ``function``'s forward, a backward that ignores ``grad_output``.

    Built on the course's one bridge, :func:`dlopt.kit.torch_bridge.autograd_function`.

    Parameters
    ----------
    function : torch.autograd.Function subclass (or anything with ``apply``)
        Elementwise, of one tensor.

    Returns
    -------
    type
        A ``torch.autograd.Function`` subclass; its ``backward(ctx, grad_output)`` returns
        ``d function(x) / dx`` elementwise, as if ``grad_output`` were all ones.
    """
    name = getattr(function, "__name__", "Function")

    def forward(x):
        return function.apply(x), (x,)

    def backward(grad_output, cache):
        (x,) = cache
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            y = function.apply(leaf)
            (local,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
        return local  # the local derivative alone: grad_output is forgotten

    return autograd_function(forward, backward, name=f"{name}WithoutGradOutput",
                             blame=(name, name))
