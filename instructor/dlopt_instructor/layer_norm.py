"""Layer norm checks (lesson 06): torch references, scenario caches and named mistakes.

The course's layer-norm interface (``x`` of shape (N, D), one example per row, normalized over
its D features, the last axis):

- ``out, cache = layernorm_forward(x, gamma, beta, eps=1e-5)``; ``cache`` is a dict with the
  keys ``x_hat`` (N, D), ``xc`` (N, D): x minus each row's mean, ``var`` (N, 1): each row's
  biased variance, ``inv_std`` (N, 1): ``1 / sqrt(var + eps)``, ``gamma`` (D,) and ``eps``.
  No running statistics, no training flag: the same computation at training and evaluation.
- ``dx, dgamma, dbeta = layernorm_backward(dout, cache)``.

Everything trusted here is computed by ``torch.nn.functional.layer_norm`` and torch's autograd
in float64. The named mistakes are torch computations with one thing changed (an axis, an
argument, a ``detach()``); none of this is the learner's NumPy code.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from dlopt.kit.threads import cpu_threads
from dlopt_instructor.norm_paths import path_mistakes
from dlopt_instructor.norm_paths import to_array as _np
from dlopt_instructor.norm_paths import to_tensor as _t

__all__ = [
    "BACKWARD_MISTAKES",
    "FORWARD_MISTAKES",
    "backward_mistake",
    "forward_mistake",
    "torch_layernorm_backward",
    "torch_layernorm_cache",
    "torch_layernorm_forward",
]




@cpu_threads(1)
def torch_layernorm_cache(x, gamma, eps: float = 1e-5) -> dict:
    """The cache of layer norm on ``x``, computed by torch in float64.

    Parameters
    ----------
    x : ndarray, shape (N, D)
    gamma : ndarray, shape (D,)
    eps : float

    Returns
    -------
    dict
        ``x_hat`` (N, D): ``F.layer_norm`` without scale and shift; ``xc`` (N, D): ``x`` minus
        its row means; ``var`` (N, 1): the biased row variances (``torch.var_mean`` over the
        last axis, ``correction=0``, keepdim); ``inv_std`` (N, 1): ``torch.rsqrt(var + eps)``;
        ``gamma`` (D,), a copy; ``eps``, a float.
    """
    x_t = _t(x)
    var, mean = torch.var_mean(x_t, dim=-1, correction=0, keepdim=True)
    return {
        "x_hat": _np(F.layer_norm(x_t, x_t.shape[-1:], eps=eps)),
        "xc": _np(x_t - mean),
        "var": _np(var),
        "inv_std": _np(torch.rsqrt(var + eps)),
        "gamma": np.array(gamma, dtype=np.float64),
        "eps": float(eps),
    }


@cpu_threads(1)
def torch_layernorm_forward(x, gamma, beta, eps: float = 1e-5):
    """Layer norm by ``torch.nn.functional.layer_norm``, with the course's interface.

    Returns
    -------
    out : ndarray, shape (N, D)
    cache : dict
        :func:`torch_layernorm_cache`.
    """
    x_t = _t(x)
    out = F.layer_norm(x_t, x_t.shape[-1:], _t(gamma), _t(beta), eps=eps)
    return _np(out), torch_layernorm_cache(x, gamma, eps)


@cpu_threads(1)
def torch_layernorm_backward(dout, cache: dict):
    """Gradients of layer norm by torch's autograd through ``F.layer_norm``.

    Only ``cache["xc"]``, ``cache["gamma"]`` and ``cache["eps"]`` are read: layer norm gives the
    same output and gradients for ``x`` and for ``x`` minus its row means.

    Returns
    -------
    dx : ndarray, shape (N, D)
    dgamma, dbeta : ndarray, shape (D,)
    """
    with torch.enable_grad():
        x = _t(cache["xc"], requires_grad=True)
        gamma = _t(cache["gamma"], requires_grad=True)
        beta = torch.zeros_like(gamma, requires_grad=True)
        out = F.layer_norm(x, x.shape[-1:], gamma, beta, eps=cache["eps"])
        out.backward(_t(dout))
    return _np(x.grad), _np(gamma.grad), _np(beta.grad)


# ---------------------------------------------------------------------------------------------
# Named mistakes of the forward pass (each returns torch's own cache: only ``out`` is wrong)
# ---------------------------------------------------------------------------------------------
def _with_cache(out_fn: Callable) -> Callable:
    @cpu_threads(1)
    def forward(x, gamma, beta, eps=1e-5):
        x_t = _t(x)
        return _np(out_fn(x_t, _t(gamma), _t(beta), eps)), torch_layernorm_cache(x, gamma, eps)

    return forward


def _over_batch(x, gamma, beta, eps):  # batch norm's axis: statistics per feature
    var, mean = torch.var_mean(x, dim=0, correction=0, keepdim=True)
    return gamma * (x - mean) * torch.rsqrt(var + eps) + beta


def _whole_array(x, gamma, beta, eps):
    var, mean = torch.var_mean(x, correction=0)
    return gamma * (x - mean) * torch.rsqrt(var + eps) + beta


def _unbiased(x, gamma, beta, eps):
    var, mean = torch.var_mean(x, dim=-1, correction=1, keepdim=True)
    return gamma * (x - mean) * torch.rsqrt(var + eps) + beta


def _eps_outside_sqrt(x, gamma, beta, eps):
    var, mean = torch.var_mean(x, dim=-1, correction=0, keepdim=True)
    return gamma * (x - mean) / (torch.sqrt(var) + eps) + beta


def _no_eps(x, gamma, beta, eps):
    var, mean = torch.var_mean(x, dim=-1, correction=0, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(var) + beta


def _no_gamma_beta(x, gamma, beta, eps):
    return F.layer_norm(x, x.shape[-1:], eps=eps)


#: Wrong layer-norm forward passes, by name (all with the course's forward interface).
FORWARD_MISTAKES: dict[str, Callable] = {
    "over_batch": _with_cache(_over_batch),
    "whole_array": _with_cache(_whole_array),
    "unbiased_variance": _with_cache(_unbiased),
    "eps_outside_sqrt": _with_cache(_eps_outside_sqrt),
    "no_eps": _with_cache(_no_eps),
    "no_gamma_beta": _with_cache(_no_gamma_beta),
}


def forward_mistake(kind: str) -> Callable:
    """A wrong forward pass with the course's interface (see :data:`FORWARD_MISTAKES`).

    - ``over_batch``: mean and variance over the batch axis (axis 0): batch norm's statistics;
    - ``whole_array``: one mean and variance for the whole array;
    - ``unbiased_variance``: the variance divided by D - 1;
    - ``eps_outside_sqrt``: divides by ``sqrt(var) + eps``;
    - ``no_eps``: divides by ``sqrt(var)`` (nan for a constant example);
    - ``no_gamma_beta``: returns ``x_hat``.

    Each returns torch's correct cache, so that only the output is wrong.
    """
    try:
        return FORWARD_MISTAKES[kind]
    except KeyError:
        raise ValueError(f"unknown mistake {kind!r}; choose one of "
                         f"{sorted(FORWARD_MISTAKES)}") from None


# ---------------------------------------------------------------------------------------------
# Named mistakes of the backward pass
# ---------------------------------------------------------------------------------------------
@cpu_threads(1)
def _sums_over_batch(dout, cache):
    """Batch norm's closed form (sums over axis 0) applied to layer norm's cache."""
    dout = np.asarray(dout, dtype=np.float64)
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    n = dout.shape[0]
    dx_hat = dout * gamma
    dx = inv_std / n * (n * dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0))
    _, dgamma, dbeta = torch_layernorm_backward(dout, cache)
    return dx, dgamma, dbeta


@cpu_threads(1)
def _dparams_over_features(dout, cache):
    dx, _, _ = torch_layernorm_backward(dout, cache)
    dout = np.asarray(dout, dtype=np.float64)
    return dx, (dout * cache["x_hat"]).sum(axis=1), dout.sum(axis=1)


#: Wrong layer-norm backward passes, by name (all with the course's backward interface).
BACKWARD_MISTAKES: dict[str, Callable] = {
    **path_mistakes(dim=-1),  # the mean or variance path cut, or Bessel's n - 1
    "sums_over_batch": _sums_over_batch,
    "dparams_over_features": _dparams_over_features,
}


def backward_mistake(kind: str) -> Callable:
    """A wrong backward pass with the course's interface (see :data:`BACKWARD_MISTAKES`).

    - ``no_mean_path``: each row's mean treated as a constant;
    - ``no_variance_path``: each row's variance treated as a constant;
    - ``statistics_constant``: both treated as constants;
    - ``bessel_in_backward``: the variance differentiated as ``sum / (D - 1)``;
    - ``sums_over_batch``: batch norm's closed form, its sums over the batch (axis 0);
    - ``dparams_over_features``: ``dgamma`` and ``dbeta`` summed over the features (axis 1),
      shape (N,), instead of over the batch.
    """
    try:
        return BACKWARD_MISTAKES[kind]
    except KeyError:
        raise ValueError(f"unknown mistake {kind!r}; choose one of "
                         f"{sorted(BACKWARD_MISTAKES)}") from None
