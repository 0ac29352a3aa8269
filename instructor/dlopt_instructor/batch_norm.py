"""Batch norm checks (lesson 06): torch references, scenario caches, a driver, named mistakes.

The course's batch-norm interface (``x`` of shape (N, D), one feature per column):

- ``out, cache = forward(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5)``;
  ``state`` is a dict holding ``running_mean`` and ``running_var`` (shape (D,)), created as
  zeros and ones when absent and updated in place in training mode as
  ``torch.nn.BatchNorm1d`` does; ``cache`` is a dict with the keys :data:`CACHE_KEYS`
  (training mode) or None (evaluation mode).
- ``dx, dgamma, dbeta = backward(dout, cache)``.

Everything trusted here is computed by ``torch.nn.functional.batch_norm`` and torch's autograd
in float64. The named mistakes are built from torch as well: a missing gradient path is a
``detach()``, a wrong convention a changed argument. None of this is the learner's NumPy code.
"""

from __future__ import annotations

import copy
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
    "torch_batchnorm_backward",
    "torch_batchnorm_cache",
    "torch_batchnorm_forward",
]





def _ensure_state(state: dict, n_features: int) -> None:
    if "running_mean" not in state:
        state["running_mean"] = np.zeros(n_features)
    if "running_var" not in state:
        state["running_var"] = np.ones(n_features)


@cpu_threads(1)
def torch_batchnorm_cache(x, gamma, eps: float = 1e-5) -> dict:
    """The training-mode cache of batch norm on ``x``, computed by torch in float64.

    Parameters
    ----------
    x : ndarray, shape (N, D)
    gamma : ndarray, shape (D,)
    eps : float

    Returns
    -------
    dict
        ``x_hat`` (N, D): ``F.batch_norm`` without scale and shift; ``xc`` (N, D): ``x`` minus
        its batch mean; ``var`` (D,): the biased batch variance (``torch.var_mean`` with
        ``correction=0``); ``inv_std`` (D,): ``torch.rsqrt(var + eps)``; ``gamma`` (D,), a copy;
        ``eps``, a float.
    """
    x_t = _t(x)
    var, mean = torch.var_mean(x_t, dim=0, correction=0)
    return {
        "x_hat": _np(F.batch_norm(x_t, None, None, training=True, eps=eps)),
        "xc": _np(x_t - mean),
        "var": _np(var),
        "inv_std": _np(torch.rsqrt(var + eps)),
        "gamma": np.array(gamma, dtype=np.float64),
        "eps": float(eps),
    }


@cpu_threads(1)
def torch_batchnorm_forward(x, gamma, beta, state: dict, *, train: bool = True,
                            momentum: float = 0.1, eps: float = 1e-5):
    """Batch norm by ``torch.nn.functional.batch_norm``, with the course's interface.

    Parameters
    ----------
    x : ndarray, shape (N, D)
    gamma, beta : ndarray, shape (D,)
    state : dict
        ``running_mean`` and ``running_var`` (D,), created as zeros and ones when absent;
        updated in place in training mode (torch's rule: ``momentum`` weighs the new batch,
        the running variance takes the unbiased batch variance).
    train : bool
    momentum, eps : float

    Returns
    -------
    out : ndarray, shape (N, D)
    cache : dict or None
        :func:`torch_batchnorm_cache` in training mode, None in evaluation mode.
    """
    x = np.asarray(x, dtype=np.float64)
    _ensure_state(state, x.shape[1])
    running_mean = _t(state["running_mean"])
    running_var = _t(state["running_var"])
    out = F.batch_norm(_t(x), running_mean, running_var, _t(gamma), _t(beta),
                       training=train, momentum=momentum, eps=eps)
    if not train:
        return _np(out), None
    state["running_mean"] = _np(running_mean)
    state["running_var"] = _np(running_var)
    return _np(out), torch_batchnorm_cache(x, gamma, eps)


@cpu_threads(1)
def torch_batchnorm_backward(dout, cache: dict):
    """Gradients of training-mode batch norm by torch's autograd.

    Only ``cache["xc"]``, ``cache["gamma"]`` and ``cache["eps"]`` are read: batch norm in
    training mode gives the same output and gradients for ``x`` and for ``x`` minus its mean.

    Parameters
    ----------
    dout : ndarray, shape (N, D)
        Gradient of the loss with respect to the output.
    cache : dict
        See :data:`CACHE_KEYS`.

    Returns
    -------
    dx : ndarray, shape (N, D)
    dgamma, dbeta : ndarray, shape (D,)
    """
    x = _t(cache["xc"], requires_grad=True)
    gamma = _t(cache["gamma"], requires_grad=True)
    beta = torch.zeros_like(gamma, requires_grad=True)
    with torch.enable_grad():
        out = F.batch_norm(x, None, None, gamma, beta, training=True, eps=cache["eps"])
        out.backward(_t(dout))
    return _np(x.grad), _np(gamma.grad), _np(beta.grad)


# ---------------------------------------------------------------------------------------------
# The driver of the forward check
# ---------------------------------------------------------------------------------------------








# ---------------------------------------------------------------------------------------------
# Named mistakes, built on torch
# ---------------------------------------------------------------------------------------------
def _normalized_by(denominator: Callable, x, gamma, beta, state, train, momentum, eps):
    """Batch norm with ``x_hat = (x - mean) / denominator(var, eps)``; state as torch's."""
    x_t = _t(x)
    if train:
        _, cache = torch_batchnorm_forward(x, gamma, beta, state, train=True,
                                           momentum=momentum, eps=eps)
        var, mean = torch.var_mean(x_t, dim=0, correction=0)
    else:
        _ensure_state(state, x_t.shape[1])
        mean, var, cache = _t(state["running_mean"]), _t(state["running_var"]), None
    x_hat = (x_t - mean) / denominator(var, eps)
    return _np(_t(gamma) * x_hat + _t(beta)), cache


@cpu_threads(1)
def _eps_outside_sqrt(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5):
    return _normalized_by(lambda var, eps: torch.sqrt(var) + eps, x, gamma, beta, state,
                          train, momentum, eps)


@cpu_threads(1)
def _biased_running_var(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5):
    old = None if "running_var" not in state else np.array(state["running_var"])
    out, cache = torch_batchnorm_forward(x, gamma, beta, state, train=train,
                                         momentum=momentum, eps=eps)
    if train:
        old = np.ones(np.shape(x)[1]) if old is None else old
        biased = _np(torch.var(_t(x), dim=0, correction=0))
        state["running_var"] = (1 - momentum) * old + momentum * biased
    return out, cache


@cpu_threads(1)
def _momentum_reversed(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5):
    return torch_batchnorm_forward(x, gamma, beta, state, train=train, momentum=1 - momentum,
                                   eps=eps)


@cpu_threads(1)
def _eval_batch_statistics(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5):
    if train:
        return torch_batchnorm_forward(x, gamma, beta, state, momentum=momentum, eps=eps)
    _ensure_state(state, np.shape(x)[1])
    x_t = _t(x)
    var, mean = torch.var_mean(x_t, dim=0, correction=0)  # also for a batch of one
    return _np(_t(gamma) * (x_t - mean) * torch.rsqrt(var + eps) + _t(beta)), None


@cpu_threads(1)
def _ignores_train_flag(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5):
    if train or np.shape(x)[0] > 1:
        out, cache = torch_batchnorm_forward(x, gamma, beta, state, train=True,
                                             momentum=momentum, eps=eps)
        return out, (cache if train else None)
    # a batch of one in evaluation mode (torch refuses it in training mode): the output is
    # beta, the running mean moves towards x, the unbiased variance 0 / 0 is nan
    out, _ = _eval_batch_statistics(x, gamma, beta, state, train=False, eps=eps)
    state["running_mean"] = (1 - momentum) * state["running_mean"] + momentum * np.asarray(x)[0]
    state["running_var"] = np.full(np.shape(x)[1], np.nan)
    return out, None


@cpu_threads(1)
def _running_not_stored(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5):
    _ensure_state(state, np.shape(x)[1])
    return torch_batchnorm_forward(x, gamma, beta, copy.deepcopy(state), train=train,
                                   momentum=momentum, eps=eps)


@cpu_threads(1)
def _no_eps(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5):
    return _normalized_by(lambda var, eps: torch.sqrt(var), x, gamma, beta, state, train,
                          momentum, eps)


@cpu_threads(1)
def _no_gamma_beta(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5):
    ones = np.ones(np.shape(x)[1])
    out, cache = torch_batchnorm_forward(x, ones, 0 * ones, state, train=train,
                                         momentum=momentum, eps=eps)
    if cache is not None:
        cache["gamma"] = np.array(gamma, dtype=np.float64)
    return out, cache


#: Wrong batch-norm forward passes, by name (all with the course's forward interface).
FORWARD_MISTAKES: dict[str, Callable] = {
    "biased_running_var": _biased_running_var,
    "momentum_reversed": _momentum_reversed,
    "eval_batch_statistics": _eval_batch_statistics,
    "ignores_train_flag": _ignores_train_flag,
    "running_not_stored": _running_not_stored,
    "eps_outside_sqrt": _eps_outside_sqrt,
    "no_eps": _no_eps,
    "no_gamma_beta": _no_gamma_beta,
}


def forward_mistake(kind: str) -> Callable:
    """A wrong forward pass with the course's interface (see :data:`FORWARD_MISTAKES`).

    - ``biased_running_var``: the running variance averages the biased batch variance
      (torch averages the unbiased one, ``sum / (N - 1)``);
    - ``momentum_reversed``: the new batch gets weight ``1 - momentum``;
    - ``eval_batch_statistics``: evaluation mode normalizes with the batch's statistics;
    - ``ignores_train_flag``: evaluation mode behaves like training (batch statistics, and
      the running statistics are updated);
    - ``running_not_stored``: the running statistics are created but never updated;
    - ``eps_outside_sqrt``: divides by ``sqrt(var) + eps``;
    - ``no_eps``: divides by ``sqrt(var)``;
    - ``no_gamma_beta``: returns the normalized ``x_hat`` (no scale and shift).
    """
    try:
        fn = FORWARD_MISTAKES[kind]
    except KeyError:
        raise ValueError(f"unknown mistake {kind!r}; choose one of "
                         f"{sorted(FORWARD_MISTAKES)}") from None
    return fn


@cpu_threads(1)
def _dgamma_not_summed(dout, cache):
    dx, _, dbeta = torch_batchnorm_backward(dout, cache)
    return dx, np.asarray(dout, dtype=np.float64) * cache["x_hat"], dbeta


#: Wrong batch-norm backward passes, by name (all with the course's backward interface).
BACKWARD_MISTAKES: dict[str, Callable] = {
    **path_mistakes(dim=0),  # the mean or variance path cut, or Bessel's n - 1
    "dgamma_not_summed": _dgamma_not_summed,
}


def backward_mistake(kind: str) -> Callable:
    """A wrong backward pass with the course's interface (see :data:`BACKWARD_MISTAKES`).

    - ``no_mean_path``: the batch mean treated as a constant (its gradient path is missing);
    - ``no_variance_path``: the batch variance treated as a constant;
    - ``statistics_constant``: both treated as constants (evaluation mode's gradient);
    - ``bessel_in_backward``: the variance differentiated as ``sum / (N - 1)``;
    - ``dgamma_not_summed``: ``dgamma`` per example, shape (N, D), not summed over the batch.

    ``dgamma`` and ``dbeta`` are right in all but the last.
    """
    try:
        fn = BACKWARD_MISTAKES[kind]
    except KeyError:
        raise ValueError(f"unknown mistake {kind!r}; choose one of "
                         f"{sorted(BACKWARD_MISTAKES)}") from None
    return fn
