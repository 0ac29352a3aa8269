"""The driver of lesson 10's pruning check whose magnitudes are tied.

When several entries of ``w`` have the same ``|w|`` at the pruning boundary, *which* of them
is pruned is a matter of tie-breaking (``torch.topk``'s order is an implementation detail), so
two correct masks can differ entry by entry. :func:`pruned_magnitudes` calls a learner's
``magnitude_prune_mask`` and reports what every correct tie-break shares: how many entries were
pruned and the sorted magnitudes of the pruned entries. A mask that prunes every tied entry, or
none of them, or the wrong ones, shows in those two numbers.

Nothing here prunes: the check's reference is ``torch.nn.utils.prune.l1_unstructured``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlopt.kit.learner import function_name

__all__ = ["UnusableMask", "pruned_magnitudes"]


class UnusableMask(Exception):
    """The function returned something that is not a keep-mask of ``w``'s shape."""


def pruned_magnitudes(fn: Callable, w: np.ndarray, amount: float) -> dict:
    """Call ``fn(w, amount)`` and summarize its keep-mask independently of tie order.

    Parameters
    ----------
    fn : callable
        ``magnitude_prune_mask(w, amount)`` (the learner's, the reference or a mistake).
    w : ndarray
        Weights, passed to ``fn`` as they are (the caller passes a fresh copy).
    amount : float
        Passed to ``fn``.

    Returns
    -------
    dict
        ``"number of pruned entries"`` (an int) and ``"|w| of the pruned entries, sorted"``
        (an ndarray, ascending).

    Raises
    ------
    UnusableMask
        When ``fn`` returns something other than an array of ``w``'s shape holding booleans
        (or only 0 and 1).
    """
    original = np.array(w, dtype=np.float64, copy=True)
    mask = fn(w, amount)
    name = function_name(fn)
    if type(mask) is not np.ndarray:
        raise UnusableMask(f"`{name}` must return a numpy array (the keep-mask), "
                           f"got {type(mask).__name__}")
    if mask.shape != original.shape:
        raise UnusableMask(f"`{name}` returned a mask of shape {mask.shape}; "
                           f"expected w's shape {original.shape}")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iuf" or not np.isin(mask, (0, 1)).all():
            raise UnusableMask(f"`{name}` must return a boolean mask (True = kept), "
                               f"got dtype {mask.dtype}")
        mask = mask != 0
    pruned = ~mask
    return {"number of pruned entries": int(pruned.sum()),
            "|w| of the pruned entries, sorted": np.sort(np.abs(original[pruned]))}
