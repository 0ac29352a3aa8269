"""Drivers of lesson 02's initialization checks: a seed turned into a generator, so checks pass
plain data."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["draw_with_seed", "sample_std"]


def _draw(init: Callable, fan_in: int, fan_out: int, seed: int) -> np.ndarray:
    W = init(int(fan_in), int(fan_out), np.random.default_rng(seed))
    if isinstance(W, torch.Tensor):
        W = W.detach().cpu().numpy()
    return np.asarray(W)


def draw_with_seed(init: Callable, fan_in: int, fan_out: int, seed: int) -> np.ndarray:
    """Call ``init(fan_in, fan_out, rng)`` with ``rng = np.random.default_rng(seed)``.

    Two initializers that draw ``rng.normal(0, std, size=(fan_in, fan_out))`` with the same
    ``std`` return the same array for the same seed.

    Returns
    -------
    ndarray
        The weights, as ``init`` returned them (converted to a NumPy array).
    """
    return _draw(init, fan_in, fan_out, seed)


def sample_std(init: Callable, fan_in: int, fan_out: int, seed: int) -> float:
    """Standard deviation of all the entries of one draw ``init(fan_in, fan_out, rng)``.

    For a large layer this estimates the initializer's ``std`` to about
    ``1 / sqrt(2 * fan_in * fan_out)`` relative error, whatever order the entries are drawn in.
    """
    return float(np.std(_draw(init, fan_in, fan_out, seed)))
