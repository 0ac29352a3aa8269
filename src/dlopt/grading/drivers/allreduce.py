"""The driver of lesson 11's ``ring_allreduce`` check: one row per rank, as plain arrays.

``ring_allreduce(xs)`` returns ``(out, sent)``: ``out`` the k buffers the ranks hold at the
end, ``sent`` how many elements each rank sent. A learner may return them as lists, tuples or
arrays; :func:`ring_outputs` reads any of these and reports two arrays, so that a message
names a rank and an element ("``['out']``: ... at index (2, 4)" is rank 2's element 4) instead
of a container type. Something that is not k equal-length buffers and k counts is refused with
a sentence that says what was expected.

Nothing here all-reduces: the check's reference is torch (the sum of the ranks' tensors), and
the counts are the messages of the ring's schedule, simulated by the instructor's reference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlopt.kit.learner import function_name

__all__ = ["UnusableRingResult", "ring_outputs"]


class UnusableRingResult(Exception):
    """``ring_allreduce`` returned something other than ``(out, sent)`` for k ranks."""


def _numbers(value, what: str, name: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UnusableRingResult(f"`{name}`: {what} must hold numbers ({exc})") from None
    return array


def ring_outputs(fn: Callable, xs: list) -> dict:
    """Call ``fn(xs)`` and report rank by rank what it returned.

    Parameters
    ----------
    fn : callable
        ``ring_allreduce(xs) -> (out, sent)`` (the learner's, the reference or a mistake).
    xs : list of k ndarrays of shape (N,)
        One buffer per rank, passed to ``fn`` as they are (the caller passes fresh copies).

    Returns
    -------
    dict
        ``"out"``: float64 array of shape (k, N), row r = rank r's buffer at the end;
        ``"sent"``: float64 array of shape (k,), the elements each rank sent.

    Raises
    ------
    UnusableRingResult
        When ``fn`` does not return a pair ``(out, sent)`` of k buffers of N numbers and k
        counts.
    """
    k, n = len(xs), int(np.size(xs[0])) if len(xs) else 0
    result = fn(xs)
    name = function_name(fn)
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise UnusableRingResult(f"`{name}` must return a pair (out, sent); got "
                                 f"{type(result).__name__}")
    out, sent = result
    if not isinstance(out, (list, tuple, np.ndarray)) or len(out) != k:
        got = len(out) if hasattr(out, "__len__") else type(out).__name__
        raise UnusableRingResult(f"`{name}`: out must hold one buffer per rank, {k} in all; "
                                 f"got {got}")
    rows = [_numbers(buffer, f"out[{r}]", name) for r, buffer in enumerate(out)]
    for r, row in enumerate(rows):
        if row.shape != (n,):
            raise UnusableRingResult(f"`{name}`: out[{r}] has shape {row.shape}; every rank's "
                                     f"buffer has the input's shape ({n},)")
    counts = _numbers(sent, "sent", name)
    if counts.shape != (k,):
        raise UnusableRingResult(f"`{name}`: sent must hold one count per rank, shape ({k},); "
                                 f"got shape {counts.shape}")
    return {"out": np.stack(rows) if rows else np.zeros((0, n)), "sent": counts}
