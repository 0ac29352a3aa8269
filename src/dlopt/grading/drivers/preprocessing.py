"""Driver of lesson 02's ``one_hot`` check: the values, and whether the dtype is an integer one.

The course's comparisons look at values only (an integer 1 and a float 1.0 compare equal), so
this driver reports the dtype as plain data next to the array: ``torch.nn.functional.one_hot``
returns integers, and so must the learner's ``one_hot``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["run_one_hot"]


def run_one_hot(one_hot: Callable, y, num_classes: int) -> dict:
    """Call ``one_hot(y, num_classes)`` and report its values and the kind of its dtype.

    Parameters
    ----------
    one_hot : callable
        The function under test (or the reference, or a mistake).
    y : ndarray of int, shape (N,)
    num_classes : int

    Returns
    -------
    dict
        ``"one_hot"``: the returned array as it is (any dtype; shape (N, num_classes) when
        right); ``"dtype"``: ``"integer"`` when its dtype is a signed or unsigned integer,
        else the dtype's name (``"float64"``, ``"bool"``).

    Raises
    ------
    Exception
        Whatever ``one_hot`` raises (a label outside ``[0, num_classes)`` should raise
        ``ValueError``).
    """
    out = np.asarray(one_hot(y, num_classes))
    return {"one_hot": out, "dtype": "integer" if out.dtype.kind in "iu" else str(out.dtype)}
