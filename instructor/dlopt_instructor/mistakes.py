"""Helpers for writing the classic mistakes of a check (:class:`dlopt.grading.Mistake`).

A check names a mistake when the learner's outcome equals the mistake's outcome. A mistake
that fails on some inputs (``x @ W.T`` when ``W`` is not square, say) would then "match" any
learner's code that fails there with the same exception type, for an unrelated reason (a
missing ``keepdims``, for instance), and name the wrong mistake. :func:`where_shapes_allow`
prevents that: where the mistake cannot compute a value, it raises
:class:`MistakeNotApplicable`, which no learner's code raises, so the mistake is named only
on the scenarios where it produced a value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

__all__ = ["MistakeNotApplicable", "where_shapes_allow"]


class MistakeNotApplicable(Exception):
    """The mistake has no value for these inputs (its formula fails on their shapes)."""


def where_shapes_allow(fn: Callable) -> Callable:
    """Wrap a mistake so that a failure on shapes never matches a learner's failure.

    Parameters
    ----------
    fn : callable
        The mistake's function.

    Returns
    -------
    callable
        Calls ``fn``; a ``ValueError``, ``RuntimeError`` or ``IndexError`` it raises (numpy's
        and torch's shape errors) becomes :class:`MistakeNotApplicable`.
    """

    @functools.wraps(fn)
    def mistake(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, RuntimeError, IndexError) as exc:
            raise MistakeNotApplicable(str(exc)) from None

    return mistake
