"""Lesson 02's initialization references: the standard deviation ``torch.nn.init`` draws with."""

from __future__ import annotations

import numpy as np
import torch

from dlopt.kit.threads import cpu_threads

__all__ = ["torch_he_normal", "torch_init_std", "torch_xavier_normal"]


def torch_init_std(kind: str, fan_in: int, fan_out: int) -> float:
    """The standard deviation ``torch.nn.init`` draws with, for a layer ``x @ W``.

    ``kind`` is ``"xavier"`` (``xavier_normal_``, gain 1) or ``"he"`` (``kaiming_normal_``,
    ``mode='fan_in'``, ``nonlinearity='relu'``). Torch stores a weight as (fan_out, fan_in);
    the standard deviation is read off a draw of torch's initializer divided, entry by entry,
    by a standard-normal draw from the same seed (torch draws ``std * z``).
    """
    if kind not in ("xavier", "he"):
        raise ValueError(f"unknown init {kind!r}; choose 'xavier' or 'he'")
    with cpu_threads(1):
        weight = torch.empty(int(fan_out), int(fan_in), dtype=torch.float64)
        if kind == "xavier":
            torch.nn.init.xavier_normal_(weight, generator=torch.Generator().manual_seed(0))
        else:
            torch.nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu",
                                          generator=torch.Generator().manual_seed(0))
        z = torch.empty_like(weight).normal_(0.0, 1.0,
                                             generator=torch.Generator().manual_seed(0))
        return float(torch.median(weight / z))


def torch_xavier_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """``rng.normal(0, std, size=(fan_in, fan_out))`` with torch's Xavier-normal ``std``."""
    return rng.normal(0.0, torch_init_std("xavier", fan_in, fan_out), size=(fan_in, fan_out))


def torch_he_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """``rng.normal(0, std, size=(fan_in, fan_out))`` with torch's He-normal (ReLU) ``std``."""
    return rng.normal(0.0, torch_init_std("he", fan_in, fan_out), size=(fan_in, fan_out))
