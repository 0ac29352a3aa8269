"""Call a learner's functions without letting an unfinished exercise crash an experiment.

Used by every lesson's experiments and explorers (lessons 01 to 09), by the kit's update-rule
loop (:mod:`dlopt.kit.trajectory`) and torch bridge (:mod:`dlopt.kit.torch_bridge`), and by
the grading drivers (to name the learner's function in a message).

Experiments and widgets take the learner's own functions. In a fresh notebook those still
raise ``NotImplementedError``; the helpers here turn that into a short message such as
"implement `relu` first" and let the experiment go on with the functions that work. Every
message is written by :func:`explain`, so all lessons word them the same way:

- :func:`attempt` runs an experiment: only ``NotImplementedError`` becomes a message, naming
  the stub that raised however deep inside the experiment it was called; a real bug still
  raises.
- :func:`probe` tries a learner's function before an experiment relies on it: whatever it
  raises becomes a message.
- :func:`attempt_each` runs one experiment per labelled input (a learner's initializer, an
  update rule...) and collects "label: implement `name` first" for those that cannot run.
- :func:`problem_with` probes an elementwise function and checks the shape it returns;
  :func:`run_each` runs one experiment per group of functions that all work.
- :class:`LearnerError` is what the kit raises when a learner's function returned something
  it cannot use (a wrong shape, a missing state); its message is complete as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "PROBE",
    "LearnerError",
    "attempt",
    "attempt_each",
    "explain",
    "function_name",
    "probe",
    "problem_with",
    "run_each",
]

T = TypeVar("T")

#: Input used to try an elementwise function before an experiment relies on it.
PROBE = np.linspace(-2.0, 2.0, 9)


class LearnerError(ValueError):
    """A learner's function returned something an experiment cannot use.

    The message names the function and says what was wrong, e.g. "`adam_step` must return a
    pair (w_next, state) with state a dict; got ndarray at step 1".
    """


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


def explain(exc: Exception, name: str) -> str:
    """The one-line message for a learner's function ``name`` that raised ``exc``.

    Parameters
    ----------
    exc : Exception
    name : str
        The function (or component) to name.

    Returns
    -------
    str
        ``"implement `name` first"`` for ``NotImplementedError`` (an unanswered stub), the
        message itself for a :class:`LearnerError`, else ``"`name` raised TypeError: ..."``.
    """
    if isinstance(exc, NotImplementedError):
        return f"implement `{name}` first"
    if isinstance(exc, LearnerError):
        return str(exc)
    return f"`{name}` raised {type(exc).__name__}: {exc}"


def attempt(fn: Callable[..., T], *args, **kwargs) -> tuple[T | None, str | None]:
    """Call ``fn(*args, **kwargs)``; a ``NotImplementedError`` becomes a message.

    Returns
    -------
    result : object or None
        What ``fn`` returned, or None if something it called is not implemented yet.
    message : str or None
        None on success, else ``"implement `name` first"``, naming the function whose body
        raised (the learner's stub, however deep inside ``fn`` it was called).

    Raises
    ------
    Exception
        Anything else ``fn`` raises: a bug is not hidden behind a message.
    """
    try:
        return fn(*args, **kwargs), None
    except NotImplementedError as exc:
        return None, explain(exc, _raiser(exc))


def attempt_each(inputs: Mapping[str, Any],
                 experiment: Callable[[Any], T]) -> tuple[dict[str, T], list[str]]:
    """Run ``experiment(inputs[label])`` for every label; unfinished ones become messages.

    Parameters
    ----------
    inputs : mapping of str to object
        For instance ``{"Xavier": xavier_normal, "He": he_normal}``.
    experiment : callable
        Called with one input; it calls the learner's function(s) in it.

    Returns
    -------
    results : dict
        ``label -> experiment's result`` for the inputs whose experiment ran, in input order.
    messages : list of str
        ``"He: implement `he_normal` first"`` for each that hit an unfinished function (see
        :func:`attempt`; anything else it raises propagates).
    """
    results: dict[str, T] = {}
    messages: list[str] = []
    for label, value in inputs.items():
        result, message = attempt(experiment, value)
        if message is None:
            results[label] = result
        else:
            messages.append(f"{label}: {message}")
    return results, messages


def probe(fn: Callable[..., T], *args, **kwargs) -> tuple[T | None, str | None]:
    """Call a learner's ``fn(*args, **kwargs)``; whatever it raises becomes a message.

    NumPy's floating-point warnings are silenced during the call (an experiment feeds extreme
    values on purpose).

    Returns
    -------
    result : object or None
        What ``fn`` returned, or None when it raised.
    message : str or None
        None on success, else :func:`explain`'s message naming ``fn``.
    """
    try:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001 - any failure of learner code becomes a message
        return None, explain(exc, function_name(fn))


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
    out, problem = probe(fn, np.array(x, dtype=np.float64))
    if problem is not None:
        return problem
    shape = np.shape(out)
    if shape != np.shape(x):
        return f"`{function_name(fn)}` returned shape {shape} for an input of shape {np.shape(x)}"
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
        ran, failed = attempt_each({label: fns}, lambda group: experiment(*group))
        results.update(ran)
        messages += failed
    return results, messages
