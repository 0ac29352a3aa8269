"""Gradient clipping checks (lesson 03): torch's ``clip_grad_norm_`` as the oracle, named mistakes.

The course's interface: ``clipped, total_norm = clip_grad_norm(grads, max_norm)`` with
``grads`` a list of float64 arrays (one per parameter, any shapes), ``clipped`` a list of new
arrays of the same shapes and ``total_norm`` the 2-norm of all of them together, before
clipping. torch's rule (``torch.nn.utils.clip_grad_norm_``, norm_type 2)::

    total_norm = sqrt(sum_k ||g_k||^2)
    clip_coef = max_norm / (total_norm + 1e-6)
    g_k <- g_k * min(clip_coef, 1)          (for every k, the same factor)

The reference runs torch's own function on tensors whose ``.grad`` holds the arrays; each
mistake is torch's answer changed in one place, or another torch function
(``clip_grad_value_``), never the learner's NumPy code.
"""

from __future__ import annotations

import numpy as np
import torch

from dlopt.kit.threads import cpu_threads

__all__ = [
    "TORCH_EPS",
    "clip_always",
    "clip_by_value",
    "clip_each_tensor",
    "clip_without_eps",
    "norm_after_clipping",
    "sum_of_norms",
    "torch_clip_grad_norm",
]

#: What torch adds to the total norm before dividing (torch/nn/utils/clip_grad.py).
TORCH_EPS = 1e-6


def _as_params(grads) -> list[torch.Tensor]:
    params = []
    for g in grads:
        g = np.asarray(g, dtype=np.float64)
        p = torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
        p.grad = torch.tensor(g, dtype=torch.float64)
        params.append(p)
    return params


def _grads(params) -> list[np.ndarray]:
    return [p.grad.detach().numpy().copy() for p in params]


@cpu_threads(1)
def torch_clip_grad_norm(grads, max_norm):
    """``torch.nn.utils.clip_grad_norm_`` on tensors whose gradients are ``grads``.

    Parameters
    ----------
    grads : list of ndarray
    max_norm : float

    Returns
    -------
    clipped : list of ndarray
        The gradients after torch clipped them (new arrays; ``grads`` is not changed).
    total_norm : float
        What torch returns: the 2-norm of all gradients together, before clipping.
    """
    params = _as_params(grads)
    total = torch.nn.utils.clip_grad_norm_(params, float(max_norm))
    return _grads(params), float(total)


def _global_norm(grads) -> float:
    return float(np.sqrt(sum(float(np.sum(np.asarray(g, dtype=np.float64) ** 2)) for g in grads)))


def clip_each_tensor(grads, max_norm):
    """Per-tensor clipping: torch's rule applied to every array on its own (norm returned: the
    total, as torch's)."""
    clipped = [torch_clip_grad_norm([g], max_norm)[0][0] for g in grads]
    return clipped, _global_norm(grads)


@cpu_threads(1)
def clip_by_value(grads, max_norm):
    """``torch.nn.utils.clip_grad_value_``: every entry cut to [-max_norm, max_norm]."""
    params = _as_params(grads)
    torch.nn.utils.clip_grad_value_(params, float(max_norm))
    return _grads(params), _global_norm(grads)


def clip_always(grads, max_norm):
    """Scaled by max_norm / (total_norm + eps) even when that factor is above 1."""
    total = _global_norm(grads)
    coef = float(max_norm) / (total + TORCH_EPS)
    return [np.asarray(g, dtype=np.float64) * coef for g in grads], total


def clip_without_eps(grads, max_norm):
    """max_norm / total_norm, without torch's 1e-6 (0/0 for zero gradients)."""
    total = _global_norm(grads)
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = min(float(max_norm) / total, 1.0) if total > 0 else float("nan")
    return [np.asarray(g, dtype=np.float64) * coef for g in grads], total


def norm_after_clipping(grads, max_norm):
    """Right clipping, but the norm returned is the one after clipping."""
    clipped, _ = torch_clip_grad_norm(grads, max_norm)
    return clipped, _global_norm(clipped)


def sum_of_norms(grads, max_norm):
    """The total norm taken as the sum of the arrays' norms instead of the norm of all entries."""
    total = float(sum(np.linalg.norm(np.asarray(g, dtype=np.float64)) for g in grads))
    coef = min(float(max_norm) / (total + TORCH_EPS), 1.0)
    return [np.asarray(g, dtype=np.float64) * coef for g in grads], total
