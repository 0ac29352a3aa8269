"""Driver of lesson 06's ``batchnorm_forward`` check: training-mode batches, then one evaluation
call."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from dlopt.grading.drivers.norm_cache import CACHE_KEYS, check_cache, check_pair
from dlopt.kit.learner import function_name
from dlopt.kit.threads import cpu_threads

__all__ = ["CACHE_KEYS", "run_batchnorm_forward"]


def _check_cache(cache, shape, name: str, step: int) -> None:
    per_feature = shape[1:]
    check_cache(cache, {"x_hat": shape, "xc": shape, "var": per_feature,
                        "inv_std": per_feature, "gamma": per_feature},
                name=name, where=f"step {step}", mode="training")


def _pair(result, name: str, mode: str):
    return check_pair(result, name=name, where=f" in {mode} mode")


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=True) for k in a)


@cpu_threads(1)
def run_batchnorm_forward(forward: Callable, xs, gamma, beta, state: dict | None = None,
                          x_eval=None, momentum: float = 0.1, eps: float = 1e-5) -> dict:
    """Call ``forward`` in training mode on each batch of ``xs``, then once in evaluation mode.

    All calls share one state dict, the driver's own: a copy of ``state``, or an empty dict.

    Parameters
    ----------
    forward : callable
        ``out, cache = forward(x, gamma, beta, state, train=..., momentum=..., eps=...)``.
    xs : sequence of ndarray, each of shape (N, D)
        Training-mode batches, in order (may be empty).
    gamma, beta : ndarray, shape (D,)
    state : dict, optional
        Starting running statistics (copied); None for a fresh layer.
    x_eval : ndarray, shape (M, D), optional
        A batch for one evaluation-mode call after training.
    momentum, eps : float

    Returns
    -------
    dict
        ``out``: list of the training outputs, float64; ``running_mean``, ``running_var``:
        what the state holds after training; with ``x_eval``, also ``eval_out`` and
        ``eval_changed_state`` (a bool: whether the evaluation-mode call changed the state).

    Raises
    ------
    ValueError
        If ``forward`` does not return ``(out, cache)``, its training-mode cache lacks one of
        :data:`CACHE_KEYS` (or has others), or the state holds no running statistics after
        training.
    """
    name = function_name(forward)
    state = copy.deepcopy(state) if state is not None else {}
    outs = []
    for step, x in enumerate(xs, start=1):
        out, cache = _pair(forward(x, gamma, beta, state, train=True, momentum=momentum,
                                   eps=eps), name, "training")
        _check_cache(cache, np.shape(x), name, step)
        outs.append(np.array(out, dtype=np.float64))
    missing = [k for k in ("running_mean", "running_var") if k not in state]
    if missing:
        raise ValueError(f"after {name} the state dict has no {missing}: create them (zeros "
                         f"and ones) when absent and store the updates in the dict you were "
                         f"given, state['running_mean'] = ...")
    result = {"out": outs,
              "running_mean": np.array(state["running_mean"], dtype=np.float64),
              "running_var": np.array(state["running_var"], dtype=np.float64)}
    if x_eval is not None:
        before = copy.deepcopy(state)
        out, _ = _pair(forward(x_eval, gamma, beta, state, train=False, momentum=momentum,
                               eps=eps), name, "evaluation")
        result["eval_out"] = np.array(out, dtype=np.float64)
        result["eval_changed_state"] = not _same_state(before, state)
    return result
