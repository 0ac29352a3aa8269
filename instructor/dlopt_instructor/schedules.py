"""Trusted references for learning-rate schedules: ``torch.optim.lr_scheduler``, stepped.

Lesson 04 grades schedules written as functions of the step, ``lr = schedule(step, *, lr0,
...)``. Each reference here builds a throwaway SGD optimizer with ``lr=lr0``, attaches the
matching torch scheduler, calls ``optimizer.step(); scheduler.step()`` as a training loop does,
and records ``scheduler.get_last_lr()`` after every step. So the reference is torch's own
schedule, with its conventions (the learning rate of step 0 is the one before the first
``scheduler.step()``), never a formula of ours.

Every function accepts ``step`` as an int or an integer array (any shape, values >= 0) and
returns a float or a float64 array of ``step``'s shape.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

__all__ = [
    "WARMUP_START_FACTOR",
    "cosine_lr_torch",
    "exponential_lr_torch",
    "scheduler_lrs",
    "step_lr_torch",
    "warmup_cosine_lr_torch",
    "warmup_lr_torch",
]

#: torch's ``LinearLR`` refuses ``start_factor=0``; the warm-up references start at this factor
#: instead, i.e. at ``1e-12 * lr0``, which no check tolerance can tell from 0.
WARMUP_START_FACTOR = 1e-12


def scheduler_lrs(make_scheduler: Callable, lr0: float, n_steps: int) -> np.ndarray:
    """The learning rates a torch scheduler gives for steps ``0 .. n_steps``.

    Parameters
    ----------
    make_scheduler : callable
        ``make_scheduler(optimizer) -> torch.optim.lr_scheduler.LRScheduler``.
    lr0 : float
        The optimizer's learning rate (the scheduler's base learning rate).
    n_steps : int
        Number of ``optimizer.step(); scheduler.step()`` rounds.

    Returns
    -------
    ndarray, shape (n_steps + 1,), float64
        Entry ``t`` is ``get_last_lr()[0]`` after ``t`` scheduler steps.
    """
    import torch

    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=float(lr0))
    with warnings.catch_warnings():
        # SequentialLR steps its second scheduler with an explicit epoch (a deprecated call
        # inside torch itself); nothing the caller can act on.
        warnings.simplefilter("ignore")
        scheduler = make_scheduler(optimizer)
        lrs = [scheduler.get_last_lr()[0]]
        for _ in range(int(n_steps)):
            optimizer.step()
            scheduler.step()
            lrs.append(scheduler.get_last_lr()[0])
    return np.array(lrs, dtype=np.float64)


def _at(step, make_scheduler, lr0):
    steps = np.asarray(step)
    if steps.dtype.kind not in "iu":
        raise TypeError(f"step must be an int or an integer array, got dtype {steps.dtype}")
    if steps.size and steps.min() < 0:
        raise ValueError("step must be >= 0")
    lrs = scheduler_lrs(make_scheduler, lr0, int(steps.max()) if steps.size else 0)
    values = lrs[steps]
    return float(values) if steps.ndim == 0 else values


def step_lr_torch(step, *, lr0: float, step_size: int, gamma: float = 0.1):
    """``torch.optim.lr_scheduler.StepLR(step_size, gamma)`` at ``step`` (int or int array)."""
    from torch.optim.lr_scheduler import StepLR

    return _at(step, lambda opt: StepLR(opt, step_size=step_size, gamma=gamma), lr0)


def exponential_lr_torch(step, *, lr0: float, gamma: float):
    """``torch.optim.lr_scheduler.ExponentialLR(gamma)`` at ``step`` (int or int array)."""
    from torch.optim.lr_scheduler import ExponentialLR

    return _at(step, lambda opt: ExponentialLR(opt, gamma=gamma), lr0)


def cosine_lr_torch(step, *, lr0: float, total_steps: int, lr_min: float = 0.0):
    """``CosineAnnealingLR(T_max=total_steps, eta_min=lr_min)`` at ``step`` (int or int array)."""
    from torch.optim.lr_scheduler import CosineAnnealingLR

    return _at(step, lambda opt: CosineAnnealingLR(opt, T_max=total_steps, eta_min=lr_min), lr0)


def warmup_lr_torch(step, *, lr0: float, warmup_steps: int):
    """``LinearLR(start_factor≈0, end_factor=1, total_iters=warmup_steps)`` at ``step``.

    torch requires ``start_factor > 0``: :data:`WARMUP_START_FACTOR` (1e-12) stands for 0.
    """
    from torch.optim.lr_scheduler import LinearLR

    return _at(step, lambda opt: LinearLR(opt, start_factor=WARMUP_START_FACTOR, end_factor=1.0,
                                          total_iters=warmup_steps), lr0)


def warmup_cosine_lr_torch(step, *, lr0: float, warmup_steps: int, total_steps: int,
                           lr_min: float = 0.0):
    """Linear warm-up, then cosine annealing: torch's ``SequentialLR`` of the two, at ``step``.

    ``LinearLR`` (as in :func:`warmup_lr_torch`) for ``warmup_steps`` steps, then
    ``CosineAnnealingLR(T_max=total_steps - warmup_steps, eta_min=lr_min)``, switched at the
    milestone ``warmup_steps``.
    """
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    if not 0 < warmup_steps < total_steps:
        raise ValueError("need 0 < warmup_steps < total_steps")

    def make(opt):
        warmup = LinearLR(opt, start_factor=WARMUP_START_FACTOR, end_factor=1.0,
                          total_iters=warmup_steps)
        cosine = CosineAnnealingLR(opt, T_max=total_steps - warmup_steps, eta_min=lr_min)
        return SequentialLR(opt, [warmup, cosine], milestones=[warmup_steps])

    return _at(step, make, lr0)
