"""Driver of lesson 06's ``layernorm_forward`` check: the batch, then every example alone."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlopt.grading.drivers.norm_cache import CACHE_KEYS, check_cache, check_pair
from dlopt.kit.learner import function_name
from dlopt.kit.threads import cpu_threads

__all__ = ["CACHE_KEYS", "run_layernorm_forward"]


def _check_cache(cache, shape, name: str, what: str) -> None:
    n, d = shape
    check_cache(cache, {"x_hat": (n, d), "xc": (n, d), "var": (n, 1), "inv_std": (n, 1),
                        "gamma": (d,)},
                name=name, where=what, hint="one statistic per example, keepdims")


def _pair(result, name: str, what: str):
    return check_pair(result, name=name, where=f" ({what})")


@cpu_threads(1)
def run_layernorm_forward(forward: Callable, x, gamma, beta, eps: float = 1e-5) -> dict:
    """Call ``forward`` on the batch ``x``, then on each example alone (a batch of one).

    Parameters
    ----------
    forward : callable
        ``out, cache = forward(x, gamma, beta, eps=eps)``.
    x : ndarray, shape (N, D)
    gamma, beta : ndarray, shape (D,)
    eps : float

    Returns
    -------
    dict
        ``"out"``: the output for the batch, (N, D); ``"alone"``: row ``i`` is the output of
        ``forward(x[i:i+1], ...)``, (N, D). For layer norm both are the same: an example's
        output does not depend on the other examples of its batch.

    Raises
    ------
    ValueError
        If ``forward`` does not return ``(out, cache)``, or the cache does not have exactly the
        keys :data:`CACHE_KEYS` with the shapes ``x_hat``, ``xc`` (N, D), ``var``, ``inv_std``
        (N, 1) and ``gamma`` (D,).
    """
    name = function_name(forward)
    x = np.asarray(x, dtype=np.float64)
    out, cache = _pair(forward(x, gamma, beta, eps=eps), name, "on the batch")
    _check_cache(cache, x.shape, name, "on the batch")
    alone = []
    for i in range(x.shape[0]):
        row_out, row_cache = _pair(forward(x[i:i + 1].copy(), gamma, beta, eps=eps), name,
                                   f"on example {i} alone")
        _check_cache(row_cache, (1, x.shape[1]), name, f"on example {i} alone")
        alone.append(np.asarray(row_out, dtype=np.float64).reshape(-1))
    return {"out": np.array(out, dtype=np.float64), "alone": np.stack(alone)}
