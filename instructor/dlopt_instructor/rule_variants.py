"""Variants of torch.optim update rules, for naming a learner's mistake in a check.

A classic mistake in an adaptive optimizer often keeps the state right (the moments, the
step counter) and gets the last line wrong: no bias correction, ``eps`` inside the square
root, the mean *plus* the variance. :func:`torch_state_then` builds such a variant from
torch itself: ``torch.optim`` updates the state, and a short function of the mistake's
``w_next = ...`` line replaces torch's update of ``w``. The check cell shows only the wrong
line; the state comes from the trusted reference.

:func:`renamed_state` runs one torch optimizer under another's state keys, for mistakes that
are another optimizer ("RMSprop that sums the squared gradients is Adagrad").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from dlopt.kit.torch_bridge import torch_update_rule

__all__ = [
    "renamed_state",
    "torch_defaults",
    "torch_state_then",
]


def torch_defaults(optimizer: str) -> dict:
    """The hyperparameters of ``torch.optim.<optimizer>``'s constructor and their defaults.

    Only numeric and tuple defaults (``lr``, ``betas``, ``eps``, ...); flags such as
    ``foreach`` or ``maximize`` are left out.
    """
    import torch

    signature = inspect.signature(getattr(torch.optim, optimizer).__init__)
    return {name: p.default for name, p in signature.parameters.items()
            if isinstance(p.default, (int, float, tuple)) and not isinstance(p.default, bool)}


def torch_state_then(optimizer: str, final_line: Callable) -> Callable:
    """An update rule whose state is torch's and whose new ``w`` is ``final_line``'s.

    Parameters
    ----------
    optimizer : str
        ``"Adagrad"``, ``"RMSprop"``, ``"Adam"`` or ``"AdamW"``.
    final_line : callable
        ``final_line(w, dw, new_state, **hyperparameters) -> w_next``, called after torch's
        step with the state torch returned (``step`` already incremented) and every
        hyperparameter, defaults included.

    Returns
    -------
    callable
        ``w_next, state = rule(w, dw, state, **hyperparameters)``, the course's interface.
    """
    torch_rule = torch_update_rule(optimizer)
    defaults = torch_defaults(optimizer)

    def rule(w, dw, state, **hyperparameters):
        _, new_state = torch_rule(w, dw, state, **hyperparameters)
        return final_line(w, dw, new_state, **{**defaults, **hyperparameters}), new_state

    rule.__name__ = f"torch.optim.{optimizer}, then another last line"
    return rule


def renamed_state(optimizer: str, keys: dict[str, str], *, like: str) -> Callable:
    """``torch.optim.<optimizer>`` called with another optimizer's interface.

    For mistakes that *are* another optimizer: RMSprop that sums its squared gradients is
    Adagrad. The rule takes ``like``'s hyperparameters, with ``like``'s defaults, passes on
    those that ``optimizer`` accepts (``lr``, ``eps``, ``weight_decay``...), drops the others
    (``alpha``, ``lr_decay``...), and renames the state keys both ways.

    Parameters
    ----------
    optimizer : str
        The torch optimizer that really runs, e.g. ``"Adagrad"``.
    keys : dict of str to str
        ``like``'s state key -> ``optimizer``'s, e.g. ``{"square_avg": "sum"}``.
    like : str
        The optimizer whose interface and defaults the rule has, e.g. ``"RMSprop"``.

    Returns
    -------
    callable
        ``w_next, state = rule(w, dw, state, **hyperparameters)`` with ``like``'s keys.
    """
    torch_rule = torch_update_rule(optimizer)
    accepted = set(torch_defaults(optimizer))
    defaults = torch_defaults(like)
    back = {theirs: ours for ours, theirs in keys.items()}

    def rule(w, dw, state, **hyperparameters):
        given = {**defaults, **hyperparameters}
        inner = {keys.get(k, k): v for k, v in state.items()}
        w_next, new_state = torch_rule(w, dw, inner,
                                       **{k: v for k, v in given.items() if k in accepted})
        return w_next, {back.get(k, k): v for k, v in new_state.items()}

    rule.__name__ = f"torch.optim.{optimizer}"
    return rule
