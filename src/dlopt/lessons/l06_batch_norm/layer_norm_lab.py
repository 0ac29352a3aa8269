"""Lesson 06: layer norm next to batch norm, with the learner's own functions.

Two measurements: a gradient check of the learner's ``layernorm_backward`` against central
differences through their ``layernorm_forward``, and the experiment that shows why
transformers normalize with layer norm: the output for one example is compared across batches
of different composition (other examples, examples from another source, padding, the example
alone). Layer norm's output never changes; batch norm's changes in training mode, and in
evaluation mode it depends on running statistics gathered beforehand.

Nothing here implements layer norm or batch norm: the functions take the learner's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

__all__ = ["BATCH_CONDITIONS", "batch_composition", "gradient_check"]

#: The batches one example is normalized in, in the order :func:`batch_composition` reports.
BATCH_CONDITIONS = (
    "31 other digits",
    "31 different digits",
    "31 digits from another source (3x + 2)",
    "31 padding rows (zeros)",
    "alone (a batch of one)",
)


def _relative_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denominator) if denominator > 0 else 0.0


def gradient_check(forward: Callable, backward: Callable, numerical_gradient: Callable, x, gamma,
                   beta, dout, eps: float = 1e-5) -> dict:
    """Relative errors of the learner's analytic layer-norm gradients against central differences.

    With ``L = sum(forward(x, gamma, beta)[0] * dout)``, the gradients of ``L`` are what
    ``backward(dout, cache)`` returns.

    Parameters
    ----------
    forward, backward : callable
        The learner's ``layernorm_forward`` and ``layernorm_backward``.
    numerical_gradient : callable
        ``numerical_gradient(f, x)``, central differences (the lesson's own).
    x : ndarray, shape (N, D)
    gamma, beta, dout : ndarray
    eps : float

    Returns
    -------
    dict
        ``{"dx": ..., "dgamma": ..., "dbeta": ...}``: relative errors
        ``|a - b| / (|a| + |b|)``.
    """
    x, gamma, beta, dout = (np.asarray(a, dtype=np.float64) for a in (x, gamma, beta, dout))
    _, cache = forward(x.copy(), gamma.copy(), beta.copy(), eps=eps)
    dx, dgamma, dbeta = backward(dout.copy(), cache)

    def loss(x_, g_, b_):
        return float(np.sum(np.asarray(forward(x_, g_, b_, eps=eps)[0]) * dout))

    numeric = {
        "dx": numerical_gradient(lambda v: loss(v, gamma, beta), x),
        "dgamma": numerical_gradient(lambda v: loss(x, v, beta), gamma),
        "dbeta": numerical_gradient(lambda v: loss(x, gamma, v), beta),
    }
    analytic = {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}
    return {key: _relative_error(analytic[key], numeric[key]) for key in numeric}


def batch_composition(layernorm_forward: Callable, batchnorm_forward: Callable, X, *,
                      batch_size: int = 32, warmup_steps: int = 50, seed: int = 0) -> dict:
    """How much the output for one example changes with the batch it is normalized in.

    ``X[0]`` is normalized (gamma one, beta zero) inside each batch of
    :data:`BATCH_CONDITIONS`, by layer norm, by batch norm in training mode, and by batch norm
    in evaluation mode with running statistics from ``warmup_steps`` training batches of the
    rows of ``X``. Each output is compared with the output in the first batch.

    Parameters
    ----------
    layernorm_forward : callable
        The learner's ``layernorm_forward(x, gamma, beta, eps=...)``.
    batchnorm_forward : callable
        The learner's ``batchnorm_forward(x, gamma, beta, state, *, train=...)``.
    X : ndarray, shape (n, D)
        Standardized digits; ``n > 2 * batch_size``.
    batch_size, warmup_steps, seed : int

    Returns
    -------
    dict
        ``"layer norm"``, ``"batch norm (training)"``, ``"batch norm (evaluation)"``: each an
        array of length ``len(BATCH_CONDITIONS)``, the largest ``|change|`` of ``X[0]``'s output
        against the first batch (0 for the first; nan where the call raised or gave nan);
        ``"layer norm, alone"``: ``X[0]``'s layer-norm output alone (its mean is 0 and its
        variance about 1 whatever the batch).
    """
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    gamma, beta = np.ones(d), np.zeros(d)
    others = rng.permutation(np.arange(1, len(X)))
    k = batch_size - 1
    mates = [X[others[:k]], X[others[k:2 * k]], 3.0 * X[others[:k]] + 2.0, np.zeros((k, d))]
    batches = [np.vstack([X[:1], m]) for m in mates] + [X[:1].copy()]

    state: dict = {}
    for _ in range(warmup_steps):
        batchnorm_forward(X[rng.choice(len(X), batch_size)].copy(), gamma, beta, state,
                          train=True)

    def first_row(fn, batch):
        try:
            with np.errstate(all="ignore"):
                return np.asarray(fn(batch.copy()), dtype=np.float64)[0]
        except Exception:  # noqa: BLE001 - a batch of one may legitimately be refused
            return np.full(d, np.nan)

    layers = {
        "layer norm": lambda b: layernorm_forward(b, gamma, beta)[0],
        "batch norm (training)": lambda b: batchnorm_forward(b, gamma, beta, {}, train=True)[0],
        "batch norm (evaluation)": lambda b: batchnorm_forward(b, gamma, beta,
                                                               copy.deepcopy(state),
                                                               train=False)[0],
    }
    result = {}
    for name, fn in layers.items():
        outs = [first_row(fn, batch) for batch in batches]
        with np.errstate(invalid="ignore"):
            result[name] = np.array([float(np.max(np.abs(o - outs[0]))) for o in outs])
    result["layer norm, alone"] = first_row(layers["layer norm"], batches[-1])
    return result
