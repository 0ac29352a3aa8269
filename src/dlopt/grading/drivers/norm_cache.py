"""The cache of lesson 06's normalization layers, and the checks of a learner's ``(out, cache)``.

Used by the drivers of ``batchnorm_forward`` (:mod:`dlopt.grading.drivers.batch_norm`) and
``layernorm_forward`` (:mod:`dlopt.grading.drivers.layer_norm`): both layers return the same
cache, the one the course's backward passes read, and are refused with the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["CACHE_KEYS", "check_cache", "check_pair"]

#: Keys of a normalization layer's cache: what the backward pass of the course reads, no more.
CACHE_KEYS = ("x_hat", "xc", "var", "inv_std", "gamma", "eps")


def check_pair(result, *, name: str, where: str):
    """``result`` if it is a pair ``(out, cache)``, else a ValueError naming ``name``.

    Parameters
    ----------
    result : object
        What the learner's forward pass returned.
    name : str
        The learner's function.
    where : str
        Appended to the message, e.g. ``" in training mode"`` or ``" (on the batch)"``.

    Returns
    -------
    tuple
    """
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ValueError(f"{name} must return a pair (out, cache); got "
                         f"{type(result).__name__}{where}")
    return result


def check_cache(cache, shapes: Mapping[str, tuple], *, name: str, where: str, mode: str = "",
                hint: str = "") -> None:
    """Refuse a cache without exactly :data:`CACHE_KEYS`, or with an entry of another shape.

    Parameters
    ----------
    cache : object
        The cache the learner's forward pass returned.
    shapes : mapping of str to tuple of int
        The expected shape of each array of the cache that has one.
    name : str
        The learner's function.
    where : str
        Which call, e.g. ``"step 2"`` or ``"on the batch"`` (in parentheses in the message).
    mode : str
        ``"training"`` to say "in training mode" after the name.
    hint : str
        Appended to a shape message (what the shapes mean).

    Raises
    ------
    ValueError
    """
    if type(cache) is not dict or set(cache) != set(CACHE_KEYS):
        keys = sorted(cache) if isinstance(cache, dict) else type(cache).__name__
        who = f"{name} in {mode} mode" if mode else name
        raise ValueError(f"{who} must return a cache dict with exactly the keys "
                         f"{list(CACHE_KEYS)} ({where}); got {keys}")
    for key, want in shapes.items():
        if np.shape(cache[key]) != tuple(want):
            raise ValueError(f"{name}: cache[{key!r}] has shape {np.shape(cache[key])}, "
                             f"expected {tuple(want)} ({where})" + (f": {hint}" if hint else ""))
