"""Lesson 09's loss-scale reference: torch's own ``_amp_update_scale_``, one update at a time."""

from __future__ import annotations

import torch

__all__ = ["torch_update_loss_scale"]


def torch_update_loss_scale(scale: float, growth_tracker: int, found_inf: bool,
                            growth_factor: float = 2.0, backoff_factor: float = 0.5,
                            growth_interval: int = 2000) -> tuple[float, int]:
    """One update of a dynamic loss scale, by ``torch._amp_update_scale_`` (GradScaler's op).

    Parameters
    ----------
    scale : float
        The current loss scale.
    growth_tracker : int
        Consecutive steps without inf/nan gradients so far.
    found_inf : bool
        Whether this step's gradients had an inf or a nan.
    growth_factor, backoff_factor : float
    growth_interval : int

    Returns
    -------
    new_scale : float
    new_growth_tracker : int
    """
    s = torch.tensor(float(scale), dtype=torch.float32)
    tracker = torch.tensor(int(growth_tracker), dtype=torch.int32)
    inf = torch.tensor(1.0 if found_inf else 0.0)
    torch._amp_update_scale_(s, tracker, inf, float(growth_factor), float(backoff_factor),
                             int(growth_interval))
    return float(s), int(tracker)
