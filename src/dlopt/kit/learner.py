"""Run a learner's functions without letting an unfinished exercise crash an experiment.

Experiments and widgets take the learner's own functions. In a fresh notebook those still
raise ``NotImplementedError``; the helpers here turn that into a short message such as
"implement `relu` first" and let the experiment go on with the functions that work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import numpy as np

__all__ = ["attempt", "function_name", "problem_with", "run_each"]

T = TypeVar("T")

#: Input used to try an elementwise function before an experiment relies on it.
PROBE = np.linspace(-2.0, 2.0, 9)


def function_name(fn: Callable) -> str:
    """The name a learner gave ``fn`` (looks through ``functools.partial``)."""
    while hasattr(fn, "func") and not hasattr(fn, "__name__"):
        fn = fn.func
    return getattr(fn, "__name__", repr(fn))


def _raiser(exc: BaseException) -> str:
    """Name of the function whose body raised ``exc`` (the innermost frame)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_name if tb is not None else "?"


def attempt(fn: Callable[..., T], *args, **kwargs) -> tuple[T | None, str | None]:
    """Call ``fn(*args, **kwargs)``; a ``NotImplementedError`` becomes a message.

    Returns
    -------
    result : object or None
        What ``fn`` returned, or None if something it called is not implemented yet.
    message : str or None
        None on success, else ``"implement `name` first"``, naming the function whose body
        raised (the learner's stub, however deep inside ``fn`` it was called).
    """
    try:
        return fn(*args, **kwargs), None
    except NotImplementedError as exc:
        return None, f"implement `{_raiser(exc)}` first"


def problem_with(fn: Callable, x: np.ndarray = PROBE) -> str | None:
    """Try the elementwise function ``fn`` on ``x``; describe what is wrong, or return None.

    Parameters
    ----------
    fn : callable
        A learner's elementwise function, called as ``fn(x)``.
    x : ndarray
        Input to try; ``fn`` is called on a copy.

    Returns
    -------
    str or None
        ``"implement `name` first"`` when ``fn`` raises ``NotImplementedError``; a one-line
        description when it raises something else or returns an array of another shape;
        None when it returns an array of ``x``'s shape.
    """
    name = function_name(fn)
    try:
        with np.errstate(all="ignore"):
            out = fn(np.array(x, dtype=np.float64))
    except NotImplementedError:
        return f"implement `{name}` first"
    except Exception as exc:  # noqa: BLE001 - any failure of learner code becomes a message
        return f"`{name}` raised {type(exc).__name__}: {exc}"
    shape = np.shape(out)
    if shape != np.shape(x):
        return f"`{name}` returned shape {shape} for an input of shape {np.shape(x)}"
    return None


def run_each(functions: Mapping[str, tuple[Callable, ...]],
             experiment: Callable[..., T]) -> tuple[dict[str, T], list[str]]:
    """Run ``experiment(*fns)`` for every entry whose functions all work.

    Parameters
    ----------
    functions : mapping of str to tuple of callables
        For instance ``{"relu": (relu, relu_grad), "tanh": (tanh, tanh_grad)}``.
    experiment : callable
        Called as ``experiment(*functions[label])`` for each label.

    Returns
    -------
    results : dict
        ``label -> experiment's result``, for the entries that could run, in input order.
    messages : list of str
        One message per entry that was skipped, e.g. ``"relu: implement `relu_grad` first"``.
    """
    results: dict[str, T] = {}
    messages: list[str] = []
    for label, fns in functions.items():
        problems = [p for p in map(problem_with, fns) if p is not None]
        if problems:
            messages.append(f"{label}: {problems[0]}")
            continue
        result, message = attempt(experiment, *fns)
        if message is None:
            results[label] = result
        else:
            messages.append(f"{label}: {message}")
    return results, messages
