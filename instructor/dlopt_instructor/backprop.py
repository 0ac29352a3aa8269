"""Trusted references for lesson 02, built on torch and autograd, never on our own formulas.

Each function has the signature of a lesson-02 exercise and computes its answer with
``torch.nn.functional`` (the loss) and ``torch.autograd`` (every gradient), in float64:

- losses: :func:`torch_loss` turns a torch loss (``F.mse_loss``,
  ``F.binary_cross_entropy_with_logits``, ``F.cross_entropy``) into a NumPy function of
  ``(pred, target)``, and :func:`torch_loss_grad` gives its gradient with respect to ``pred``;
- the linear layer ``out = x @ W + b``: :func:`torch_linear_forward`,
  :func:`torch_linear_backward` (CS231n-style ``(out, cache)`` and ``(dx, dW, db)``);
- the two-layer MLP of the lesson: :func:`torch_mlp_loss_and_grads`, and
  :func:`torch_mlp_mistake`, which reproduces classic backprop mistakes with autograd
  (so that a check can recognise them by name).

Conventions (PyTorch's): losses average over every entry (``reduction='mean'``); class
targets are integer indices of shape ``(N,)``; a linear layer stores ``W`` as
``(fan_in, fan_out)`` so that ``out = x @ W + b`` (torch.nn.Linear stores the transpose).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from dlopt.lessons.l02_losses_backprop.mlp_lab import MLP_KEYS

__all__ = [
    "MLP_KEYS",
    "MLP_MISTAKES",
    "torch_linear_backward",
    "torch_linear_forward",
    "torch_loss",
    "torch_loss_grad",
    "torch_mlp_loss_and_grads",
    "torch_mlp_mistake",
]



def _t(x, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=requires_grad)


def _labels(y) -> torch.Tensor:
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"y must be integer class indices of shape (N,), got {y.dtype} "
                         f"of shape {y.shape}")
    return torch.tensor(y, dtype=torch.int64)


# --- losses -----------------------------------------------------------------------------------
def _arg(a) -> torch.Tensor:
    """Integer arrays become int64 tensors (class indices), anything else float64."""
    arr = np.asarray(a)
    if arr.dtype.kind in "iu":
        return torch.tensor(arr, dtype=torch.int64)
    return _t(arr)


def torch_loss(fn: Callable) -> Callable:
    """``(pred, target, **kwargs) -> float(fn(pred, target, **kwargs))`` with torch tensors.

    ``fn`` is a torch loss such as ``F.mse_loss``, ``F.binary_cross_entropy_with_logits`` or
    ``F.cross_entropy`` (whose default reduction, ``'mean'``, is kept). Float arrays become
    float64 tensors, integer arrays int64 tensors (class indices).
    """

    def reference(pred, target, **kwargs):
        return float(fn(_t(pred), _arg(target), **kwargs))

    reference.__name__ = getattr(fn, "__name__", "torch_loss")
    return reference


def torch_loss_grad(fn: Callable) -> Callable:
    """Gradient of ``fn(pred, target)`` with respect to ``pred``, by autograd.

    Same conversions as :func:`torch_loss`; the result has ``pred``'s shape, float64.
    """

    def reference(pred, target, **kwargs):
        with torch.enable_grad():
            p = _t(pred, requires_grad=True)
            fn(p, _arg(target), **kwargs).backward()
        return p.grad.numpy()

    reference.__name__ = f"grad of {getattr(fn, '__name__', 'a torch loss')}"
    return reference


# --- the linear layer -------------------------------------------------------------------------
def torch_linear_forward(x, W, b):
    """``out = x @ W + b`` in torch, with the cache ``(x, W, b)``.

    Parameters
    ----------
    x : ndarray, shape (N, D)
    W : ndarray, shape (D, M)
    b : ndarray, shape (M,)

    Returns
    -------
    out : ndarray, shape (N, M)
    cache : tuple (x, W, b)
        Copies of the inputs, as float64 arrays.
    """
    out = _t(x) @ _t(W) + _t(b)
    return out.numpy(), tuple(np.array(a, dtype=np.float64) for a in (x, W, b))


def torch_linear_backward(dout, cache):
    """Gradients of ``sum(out * dout)`` for ``out = x @ W + b``, by autograd.

    Parameters
    ----------
    dout : ndarray, shape (N, M)
        Upstream gradient dL/dout.
    cache : tuple (x, W, b)
        x of shape (N, D), W of shape (D, M), b of shape (M,).

    Returns
    -------
    dx : ndarray, shape (N, D)
    dW : ndarray, shape (D, M)
    db : ndarray, shape (M,)
    """
    x, W, b = (_t(a, requires_grad=True) for a in cache)
    out = x @ W + b
    out.backward(_t(dout))
    return x.grad.numpy(), W.grad.numpy(), b.grad.numpy()


# --- the two-layer MLP ------------------------------------------------------------------------
class _GateOnGradient(torch.autograd.Function):
    """ReLU forward; backward keeps the upstream gradient where *it* is positive (a bug)."""

    @staticmethod
    def forward(ctx, a):
        return a.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        return grad * (grad > 0)


def _mlp(params, X, y, *, relu="exact", double_softmax=False, per_example_bias=False):
    X = _t(X)
    target = _labels(y)
    n = X.shape[0]
    leaves = {k: _t(params[k], requires_grad=True) for k in ("W1", "W2")}
    for k in ("b1", "b2"):
        b = np.asarray(params[k], dtype=np.float64)
        # one copy of the bias per example: its gradient is the per-example gradient
        leaves[k] = _t(np.tile(b, (n, 1)) if per_example_bias else b, requires_grad=True)
    a = X @ leaves["W1"] + leaves["b1"]
    if relu == "exact":
        h = torch.relu(a)
    elif relu == "identity":  # forward ReLU, backward as if there were no ReLU
        h = a + (torch.relu(a) - a).detach()
    elif relu == "gate_on_gradient":
        h = _GateOnGradient.apply(a)
    else:
        raise ValueError(f"unknown relu variant {relu!r}")
    logits = h @ leaves["W2"] + leaves["b2"]
    if double_softmax:
        logits = torch.softmax(logits, dim=1)
    loss = F.cross_entropy(logits, target)
    loss.backward()
    return float(loss.detach()), {k: leaves[k].grad.numpy() for k in MLP_KEYS}


def torch_mlp_loss_and_grads(params, X, y):
    """Loss and gradients of the lesson's two-layer MLP, by torch autograd.

    ``logits = relu(X @ W1 + b1) @ W2 + b2`` and ``loss = F.cross_entropy(logits, y)``
    (mean over the batch).

    Parameters
    ----------
    params : dict
        ``W1`` (D, H), ``b1`` (H,), ``W2`` (H, C), ``b2`` (C,).
    X : ndarray, shape (N, D)
    y : ndarray of int, shape (N,)
        Class indices in 0..C-1.

    Returns
    -------
    loss : float
    grads : dict
        Same keys and shapes as ``params``: dloss/dW1, dloss/db1, dloss/dW2, dloss/db2.
        ReLU's derivative at 0 is 0 (PyTorch's convention).
    """
    return _mlp(params, X, y)


#: Classic backprop mistakes that :func:`torch_mlp_mistake` reproduces, with a description.
MLP_MISTAKES = {
    "sum_not_mean": "gradients of the summed loss (N times too large) with the mean loss",
    "no_relu_backward": "ReLU's derivative left out of the backward pass",
    "relu_gate_on_gradient": "ReLU's backward gated on the upstream gradient's sign, "
                             "not on the pre-activation's",
    "double_softmax": "softmax applied to the logits before the cross-entropy",
    "bias_grad_not_summed": "bias gradients returned per example, shape (N, H) and (N, C)",
}


def torch_mlp_mistake(params, X, y, mistake: str):
    """:func:`torch_mlp_loss_and_grads` with one classic mistake, still computed by autograd.

    Parameters
    ----------
    params, X, y
        As for :func:`torch_mlp_loss_and_grads`.
    mistake : str
        A key of :data:`MLP_MISTAKES`.

    Returns
    -------
    loss : float
    grads : dict
        What a learner who makes this mistake returns.
    """
    if mistake == "sum_not_mean":
        loss, grads = _mlp(params, X, y)
        n = np.asarray(X).shape[0]
        return loss, {k: g * n for k, g in grads.items()}
    if mistake == "no_relu_backward":
        return _mlp(params, X, y, relu="identity")
    if mistake == "relu_gate_on_gradient":
        return _mlp(params, X, y, relu="gate_on_gradient")
    if mistake == "double_softmax":
        return _mlp(params, X, y, double_softmax=True)
    if mistake == "bias_grad_not_summed":
        return _mlp(params, X, y, per_example_bias=True)
    raise ValueError(f"unknown mistake {mistake!r}; choose one of {sorted(MLP_MISTAKES)}")
