"""Drivers for the dropout checks: random masks compared by statistics, or reproduced exactly.

Two correct dropout layers draw different masks, so their outputs cannot be compared entry by
entry. :func:`dropout_statistics` runs a learner's ``dropout_forward`` on a large input and
reports what every correct implementation shares (the fraction of zeros, the mean of
``out / x``, the scale of the kept entries), with the statistics inside four standard errors
of their expected values reported *as* those values, so that correct implementations agree
exactly and wrong ones show their own numbers. :func:`seeded_dropout` calls the forward with a
seeded generator, for the exercise in which the documented draw
``keep = rng.random(x.shape) >= p`` makes the masks reproducible.

Nothing here computes dropout: the checks' references are torch's, in the lesson's notebook.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from dlopt.kit.learner import function_name
from dlopt.kit.threads import cpu_threads

__all__ = ["N_STATISTICS", "SIGMAS", "UnusableOutput", "dropout_statistics", "seeded_dropout",
           "statistics_input"]

#: Entries of the input of :func:`dropout_statistics` (a 200 x 500 array).
N_STATISTICS = 100_000
#: A statistic within this many standard errors of its expected value counts as that value.
SIGMAS = 4.0


class UnusableOutput(Exception):
    """The forward returned something the statistics cannot be computed from."""


@lru_cache(maxsize=16)
def _cached_input(n: int, seed: int) -> np.ndarray:
    gen = np.random.default_rng(seed)
    shape = (n // 500, 500) if n % 500 == 0 and n >= 500 else (1, n)
    u = gen.uniform(-1.5, 1.5, size=shape)
    x = u + np.where(u < 0, -0.5, 0.5)
    x.flags.writeable = False
    return x


def statistics_input(n: int = N_STATISTICS, seed: int = 0) -> np.ndarray:
    """The input of :func:`dropout_statistics`: no zeros, both signs, magnitudes in [0.5, 2].

    Returns
    -------
    x : ndarray, shape (n // 500, 500) (or (1, n) when 500 does not divide n), float64
        A new array on every call (the same values for the same ``n`` and ``seed``).
    """
    return _cached_input(n, seed).copy()


def _unpack(result, x: np.ndarray, name: str) -> tuple[np.ndarray, object]:
    if not (isinstance(result, tuple) and len(result) == 2):
        raise UnusableOutput(f"{name} must return a pair (out, cache); got "
                             f"{type(result).__name__}")
    out, cache = result
    if not isinstance(out, np.ndarray):
        raise UnusableOutput(f"{name} returned out of type {type(out).__name__}; "
                             f"expected a numpy array")
    if out.shape != x.shape:
        raise UnusableOutput(f"{name} returned out of shape {out.shape} for x of shape "
                             f"{x.shape}; dropout keeps the shape")
    return out, cache


def _snap(value: float, expected: float, standard_error: float) -> float:
    """``expected`` when ``value`` lies within SIGMAS standard errors of it, else ``value``."""
    if abs(value - expected) <= SIGMAS * standard_error + 1e-12:
        return float(expected)
    return round(float(value), 4)


def dropout_statistics(forward: Callable, p: float, *, train: bool = True,
                       n: int = N_STATISTICS, seed: int = 0) -> dict:
    """Run ``forward`` once on a large input and summarise the output.

    Calls ``out, cache = forward(x, p, train=train, rng=np.random.default_rng(seed + 1))``
    with ``x = statistics_input(n, seed)`` (no zero entries, so ``out == 0`` exactly where an
    entry was dropped) and compares what a correct dropout layer guarantees, whatever mask it
    draws: in training each entry is zeroed with probability ``p`` and the others are divided
    by ``1 - p``, so ``E[out] = x``; at evaluation ``out`` is ``x``.

    Parameters
    ----------
    forward : callable
        ``out, cache = forward(x, p, *, train, rng)``, the learner's ``dropout_forward``.
    p : float
        Drop probability, passed on unchecked (invalid values should make ``forward`` raise).
    train : bool
    n : int
        Number of entries of ``x``.
    seed : int
        Seed of ``x`` (``seed``) and of the generator passed to ``forward`` (``seed + 1``).

    Returns
    -------
    dict
        Keys in alphabetical order (stored notebooks sort them, so feedback reports the first
        wrong one in that order).
        ``"fraction of zeros"``: the share of entries with ``out == 0``, reported as exactly
        ``p`` (training) or 0 (evaluation) when it is within 4 standard errors
        ``sqrt(p (1 - p) / n)`` of it;
        ``"mean of out / x"``: reported as exactly 1 (0 for ``p = 1`` in training, where
        everything is dropped) when within 4 standard errors ``sqrt(p / ((1 - p) n))``;
        ``"scale of the nonzero entries"``: the mean of ``out / x`` where ``out != 0``
        (``1 / (1 - p)`` in training, 1 at evaluation; None when every entry is zero);
        ``"every nonzero entry has that scale"``: bool, to a relative 1e-9;
        ``"out == x everywhere"``: bool (True at evaluation, and in training only for p = 0);
        ``"x unchanged"``: bool, False if ``forward`` wrote into its input.

    Raises
    ------
    UnusableOutput
        If ``forward`` does not return ``(out, cache)`` with ``out`` an array of ``x``'s
        shape, or ``out`` holds nan or inf.
    Exception
        Whatever ``forward`` raises (a ValueError for an invalid ``p``, say).
    """
    name = function_name(forward)
    x = statistics_input(n, seed)
    before = x.copy()
    with cpu_threads(1):  # the reference is torch's dropout: no threads for 10^5 entries
        result = forward(x, p, train=train, rng=np.random.default_rng(seed + 1))
    out, _cache = _unpack(result, before, name)
    out = np.asarray(out, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise UnusableOutput(f"{name} returned nan or inf at p = {p} (with p = 1 every entry "
                             f"is dropped: return zeros, never divide by 1 - p = 0)")
    ratio = out / before
    zero = out == 0
    fraction = float(zero.mean())
    mean = float(ratio.mean())
    if train:
        fraction_se = math.sqrt(p * (1.0 - p) / x.size) if 0.0 <= p <= 1.0 else 0.0
        expected_mean = 0.0 if p == 1.0 else 1.0
        mean_se = math.sqrt(p / ((1.0 - p) * x.size)) if 0.0 <= p < 1.0 else 0.0
        expected_fraction = float(p)
    else:
        fraction_se = mean_se = 0.0
        expected_mean = 1.0
        expected_fraction = 0.0
    kept = ratio[~zero]
    scale = float(kept.mean()) if kept.size else None
    same = bool(kept.size == 0 or np.allclose(kept, kept[0], rtol=1e-9, atol=0.0))
    return {  # keys in alphabetical order: the order in which feedback reports them
        "every nonzero entry has that scale": same,
        "fraction of zeros": _snap(fraction, expected_fraction, fraction_se),
        "mean of out / x": _snap(mean, expected_mean, mean_se),
        "out == x everywhere": bool(np.array_equal(out, before)),
        "scale of the nonzero entries": None if scale is None else round(scale, 10),
        "x unchanged": bool(np.array_equal(x, before)),
    }


def seeded_dropout(forward: Callable, x: np.ndarray, p: float, *, train: bool = True,
                   seed: int = 0) -> dict:
    """``forward(x, p, train=train, rng=np.random.default_rng(seed))``, laid out for comparison.

    With the documented draw ``keep = rng.random(x.shape) >= p`` two correct implementations
    return the same values, so this is compared entry by entry.

    Returns
    -------
    dict
        ``"cache holds a mask"``: False when the cache's first item is None (as it is at
        evaluation); ``"cache mask"``: that item as an array (an empty array when it is None);
        ``"cache p"``: the cache's second item; ``"out"``: the output. Keys in alphabetical
        order, the order in which feedback reports them.

    Raises
    ------
    UnusableOutput
        If ``forward`` does not return a pair ``(out, cache)`` with ``out`` an array of
        ``x``'s shape and ``cache`` a pair ``(mask, p)``.
    """
    name = function_name(forward)
    out, cache = _unpack(forward(x, p, train=train, rng=np.random.default_rng(seed)), x, name)
    if not (isinstance(cache, (tuple, list)) and len(cache) == 2):
        raise UnusableOutput(f"{name} returned a cache of type {type(cache).__name__}; "
                             f"expected a pair (mask, p)")
    mask, cached_p = cache
    return {
        "cache holds a mask": mask is not None,
        "cache mask": np.zeros(0, dtype=bool) if mask is None else np.asarray(mask),
        "cache p": cached_p,
        "out": out,
    }
