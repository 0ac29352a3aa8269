"""Bridges between a learner's NumPy code and torch: one autograd bridge, one optimizer bridge.

Used by lessons 01 (activations), 06 (batch norm), 07 (dropout) and 08 (its gradcheck
experiment and the instructor's wrong variants), and by the update-rule checks of lessons 03,
04 and 05 (:func:`torch_update_rule`).

:func:`autograd_function` makes a ``torch.autograd.Function`` from a forward and a backward
pass written as plain functions, with the course's layer interface::

    out, cache = forward(*inputs)
    grads = backward(grad_output, cache)   # one gradient per tensor input

With ``numpy=True`` both passes get NumPy copies of the tensors and may return NumPy arrays:
torch does the rest of the network (linear layers, the loss, the optimizer) while the learner's
own code computes this layer and its gradient, and an experiment only works with the learner's
functions. Every wrapper of the course is built on it: :func:`numpy_activation` here,
:func:`dlopt.lessons.l06_batch_norm.bn_torch.numpy_batchnorm`,
:func:`dlopt.lessons.l07_dropout.dropout_lab.numpy_dropout`, and the instructor's
``function_variant``.

:func:`torch_update_rule` goes the other way: one step of a ``torch.optim`` optimizer with the
course's update-rule interface, the reference of the update-rule checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from dlopt.kit.learner import LearnerError, function_name

__all__ = ["autograd_function", "as_learner_array", "numpy_activation", "torch_update_rule"]


def as_learner_array(value, shape, *, fn: Callable | str, what: str) -> np.ndarray:
    """``value`` as a float64 array of ``shape``, or a :class:`LearnerError` naming ``fn``.

    Parameters
    ----------
    value : array_like
        What a learner's function returned.
    shape : tuple of int
        The shape it must have.
    fn : callable or str
        The function (or its name) to blame.
    what : str
        What the value is ("out", "dx", ...).

    Returns
    -------
    ndarray, float64
    """
    array = np.asarray(value)
    if array.shape != tuple(shape):
        name = fn if isinstance(fn, str) else function_name(fn)
        raise LearnerError(f"`{name}` returned {what} of shape {array.shape}; "
                           f"expected {tuple(shape)}")
    return np.array(array, dtype=np.float64)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()  # a copy: the learner may write into it


_SAVED = object()  # marks a cache of tensors kept by ctx.save_for_backward


class _Bridge:
    """The shared body of every function made by :func:`autograd_function`."""

    def __init__(self, forward, backward, numpy, input_names, blame):
        self.forward, self.backward, self.numpy = forward, backward, numpy
        self.input_names = tuple(input_names)
        self.blame = blame or (function_name(forward), function_name(backward))

    def _name(self, i: int) -> str:
        return self.input_names[i] if i < len(self.input_names) else f"input {i}"

    def run_forward(self, ctx, args):
        positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        # what backward needs to know about the inputs, not the inputs themselves
        ctx.bridge_layout = (len(args), positions,
                             [(args[i].shape, args[i].dtype, args[i].device) for i in positions])
        if self.numpy:
            args = [_to_numpy(a) if isinstance(a, torch.Tensor) else a for a in args]
            with torch.enable_grad(), np.errstate(all="ignore"):  # the passes may use torch
                result = self.forward(*args)
        else:
            result = self.forward(*args)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise LearnerError(f"`{self.blame[0]}` must return a pair (out, cache); got "
                               f"{type(result).__name__}")
        out, cache = result
        if not self.numpy and isinstance(cache, tuple) and cache and all(
                isinstance(c, torch.Tensor) for c in cache):
            ctx.save_for_backward(*cache)  # torch's way: no cycle, in-place changes detected
            ctx.bridge_cache = _SAVED
        else:
            ctx.bridge_cache = cache
        if not self.numpy:
            return out
        shape, dtype, device = ctx.bridge_layout[2][0]
        array = as_learner_array(out, shape, fn=self.blame[0], what="out")
        return torch.from_numpy(array).to(dtype=dtype, device=device)

    def run_backward(self, ctx, grad_output):
        n_args, positions, inputs = ctx.bridge_layout
        cache = ctx.bridge_cache  # kept: backward may run again (retain_graph, gradcheck)
        if cache is _SAVED:
            cache = tuple(ctx.saved_tensors)
        if self.numpy:
            with torch.enable_grad(), np.errstate(all="ignore"):
                grads = self.backward(_to_numpy(grad_output), cache)
        else:
            grads = self.backward(grad_output, cache)
        if not isinstance(grads, tuple):
            grads = (grads,)
        if len(grads) != len(inputs):
            raise LearnerError(f"`{self.blame[1]}` returned {len(grads)} gradients for "
                               f"{len(inputs)} inputs")
        if self.numpy:
            grads = tuple(
                torch.from_numpy(as_learner_array(g, shape, fn=self.blame[1],
                                                  what=f"d{self._name(i)}"))
                .to(dtype=dtype, device=device)
                for i, (g, (shape, dtype, device)) in enumerate(zip(grads, inputs, strict=True)))
        full = [None] * n_args
        for position, grad in zip(positions, grads, strict=True):
            full[position] = grad
        return tuple(full)


def autograd_function(forward: Callable, backward: Callable, *, name: str = "autograd_function",
                      numpy: bool = False, input_names: Sequence[str] = ("x",),
                      blame: tuple[str, str] | None = None) -> type:
    """A ``torch.autograd.Function`` subclass from a forward and a backward pass.

    Parameters
    ----------
    forward : callable
        ``out, cache = forward(*args)``, called with the arguments of ``apply``: tensors (or,
        with ``numpy=True``, NumPy copies of them) and any other value unchanged. With
        ``numpy=True``, ``out`` must have the shape of the first tensor argument (the layers of
        the course keep their input's shape).
    backward : callable
        ``grads = backward(grad_output, cache)``: the gradient of each tensor argument, in
        order (one array, or a tuple of them), of that argument's shape.
    name : str
        The class name (shown in messages and by ``repr``).
    numpy : bool
        Convert the tensors to NumPy arrays for both passes, and their results back to tensors
        of the inputs' dtype and device, checking every shape.
    input_names : sequence of str
        Names of the tensor arguments, for messages ("returned dgamma of shape ...").
    blame : (str, str), optional
        The names of the learner's functions that compute ``out`` and the gradients (default:
        the names of ``forward`` and ``backward``).

    Returns
    -------
    type
        A subclass of ``torch.autograd.Function``: ``cls.apply(*args)``.

    Raises
    ------
    dlopt.kit.learner.LearnerError
        (When applied) if a pass returns the wrong kind or shape of value.

    Examples
    --------
    >>> Sin = autograd_function(lambda x: (np.sin(x), x), lambda g, x: g * np.cos(x),
    ...                         numpy=True)
    >>> t = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    >>> Sin.apply(t).sum().backward()
    >>> t.grad
    tensor([1., 1.], dtype=torch.float64)
    """
    bridge = _Bridge(forward, backward, numpy, input_names, blame)

    def _forward(ctx, *args):
        return bridge.run_forward(ctx, args)

    def _backward(ctx, grad_output):
        return bridge.run_backward(ctx, grad_output)

    return type(name, (torch.autograd.Function,), {
        "forward": staticmethod(_forward), "backward": staticmethod(_backward),
        "__doc__": f"``{name}``: forward and backward by {bridge.blame[0]} and "
                   f"{bridge.blame[1]} (:func:`dlopt.kit.torch_bridge.autograd_function`)."})


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
        ``t``'s shape, dtype and device. Built on :func:`autograd_function`.

    Examples
    --------
    >>> act = numpy_activation(np.sin, np.cos)
    >>> t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    >>> act(t).sum().backward()
    >>> t.grad
    tensor([1., 1., 1.], dtype=torch.float64)
    """

    def forward(x):
        return f(x.copy()), x  # f may write into its input: the cache keeps x intact

    def backward(grad_output, x):
        slope = as_learner_array(f_grad(x), x.shape, fn=f_grad, what="f'(x)")
        return grad_output * slope

    function = autograd_function(forward, backward, name=f"NumpyActivation_{function_name(f)}",
                                 numpy=True, blame=(function_name(f), function_name(f_grad)))

    def activation(t: torch.Tensor) -> torch.Tensor:
        return function.apply(t)

    activation.__name__ = function_name(f)
    return activation


def torch_update_rule(optimizer: str) -> Callable:
    """One step of ``torch.optim.<optimizer>`` with this course's update-rule interface.


    ``w_next, state = rule(w, dw, state, **hyperparameters)``: hyperparameters are the
    constructor's (same names, same defaults); ``state`` uses torch's keys (``step`` as an int,
    buffers as float64 arrays) and may be empty (a fresh optimizer) or carried over.

    Parameters
    ----------
    optimizer : str
        The name of a class of ``torch.optim`` (``"SGD"``, ``"Adam"``, ...).

    Returns
    -------
    callable
        ``rule(w, dw, state, **hyperparameters) -> (w_next, state)``, named
        ``"torch.optim.<optimizer>"``.
    """

    def rule(w, dw, state, **hyperparameters):
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
