"""Lesson 04: torch's learning-rate schedulers are recursive, next to the learner's closed forms.

:func:`scheduler_trace` runs torch schedulers on a throwaway SGD optimizer, as a training loop
does (``optimizer.step(); scheduler.step()``), and records ``param_groups[0]["lr"]`` before
every step. Optionally, code outside the schedulers changes that learning rate at given steps,
as a manual drop or a badly restored checkpoint would. ``StepLR`` and ``ExponentialLR``
multiply the *current* rate by their factor, so several schedulers on one optimizer multiply
(they chain), and a rate changed from outside is carried on from its new value instead of
returning to the closed form ``lr0 * gamma ** t``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

__all__ = ["chained_vs_closed_form", "scheduler_trace"]


def scheduler_trace(make_schedulers: Callable, lr0: float, steps: int,
                    set_lr: Mapping[int, float] | None = None) -> np.ndarray:
    """The learning rates of steps ``0 .. steps`` under torch schedulers.

    Parameters
    ----------
    make_schedulers : callable
        ``make_schedulers(optimizer) -> list of LRScheduler``, all attached to ``optimizer``.
    lr0 : float
        The optimizer's initial learning rate.
    steps : int
    set_lr : mapping of int to float, optional
        ``{t: value}``: before step ``t`` is taken, ``param_groups[0]["lr"] = value``, from
        outside the schedulers.

    Returns
    -------
    ndarray, shape (steps + 1,)
        Entry ``t`` is the learning rate step ``t`` uses.
    """
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=float(lr0))
    schedulers: Sequence = make_schedulers(optimizer)
    lrs = []
    for t in range(steps + 1):
        if set_lr and t in set_lr:
            optimizer.param_groups[0]["lr"] = float(set_lr[t])
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    return np.array(lrs)


def chained_vs_closed_form(step_lr: Callable, exponential_lr: Callable, *, lr0: float = 0.1,
                           step_size: int = 4, step_gamma: float = 0.5, gamma: float = 0.9,
                           steps: int = 12, drop_at: int = 6, drop_to: float = 0.01) -> dict:
    """torch's recursive schedulers against the learner's closed forms, in three situations.

    Parameters
    ----------
    step_lr, exponential_lr : callable
        The learner's closed forms, ``step_lr(t, lr0=..., step_size=..., gamma=...)`` and
        ``exponential_lr(t, lr0=..., gamma=...)``.
    lr0, step_size, step_gamma, gamma : float
    steps : int
    drop_at : int
        The step before which code outside the scheduler sets the rate to ``drop_to``.
    drop_to : float

    Returns
    -------
    dict of ndarray, each of shape (steps + 1,)
        ``"closed form"``: ``exponential_lr(t)``; ``"ExponentialLR"``: torch alone;
        ``"ExponentialLR, lr set from outside"``: torch with the external change;
        ``"StepLR and ExponentialLR"``: both torch schedulers on one optimizer;
        ``"product of closed forms"``: ``step_lr(t) * exponential_lr(t) / lr0``.
    """
    t = np.arange(steps + 1)
    exponential = exponential_lr(t, lr0=lr0, gamma=gamma)
    step = step_lr(t, lr0=lr0, step_size=step_size, gamma=step_gamma)

    def exp_only(opt):
        return [torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)]

    def both(opt):
        return [torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=step_gamma),
                torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)]

    return {
        "closed form": np.asarray(exponential, dtype=np.float64),
        "ExponentialLR": scheduler_trace(exp_only, lr0, steps),
        "ExponentialLR, lr set from outside": scheduler_trace(exp_only, lr0, steps,
                                                              {drop_at: drop_to}),
        "StepLR and ExponentialLR": scheduler_trace(both, lr0, steps),
        "product of closed forms": np.asarray(step, dtype=np.float64) * exponential / lr0,
    }
