"""Driver of lesson 09's ``update_loss_scale`` check: a learner's rule over a sequence of steps."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["run_loss_scale"]


def run_loss_scale(update: Callable, found_infs, scale: float = 65536.0,
                   growth_tracker: int = 0, **hyperparameters) -> dict:
    """Driver: apply ``update`` once per step, with the overflow flags of ``found_infs``.

    Calls ``scale, growth_tracker = update(scale, growth_tracker, found_inf,
    **hyperparameters)`` for each flag (a Python bool).

    Returns
    -------
    dict
        ``"scale"``: float64 array of ``len(found_infs) + 1`` scales (the start, then after
        each step); ``"growth_tracker"``: the same for the tracker.

    Raises
    ------
    ValueError
        If ``update`` does not return a pair of numbers.
    """
    scales, trackers = [float(scale)], [float(growth_tracker)]
    for t, flag in enumerate(np.asarray(found_infs, dtype=bool).tolist()):
        result = update(scale, growth_tracker, flag, **hyperparameters)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ValueError(f"update_loss_scale must return a pair (new_scale, "
                             f"new_growth_tracker); got {type(result).__name__} at step {t + 1}")
        scale, growth_tracker = result
        scales.append(float(scale))
        trackers.append(float(growth_tracker))
    return {"scale": np.array(scales), "growth_tracker": np.array(trackers)}
