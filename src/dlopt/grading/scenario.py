"""The plain-data model of a check: scenarios, outcomes, and an exercise ready to judge.

A :class:`Case` is one scenario (a label and the arguments of a call); :func:`call` runs a
function on fresh copies of its arguments and records an :class:`Outcome` (a value, or an
exception by name). :class:`ExerciseData` holds everything needed to judge an exercise (the
scenarios, the expected outcomes and every named mistake's outcomes) and travels as plain
data (:mod:`dlopt.grading.codec`): from the instructor's kernel to the grader, and baked into
the student's release for the visible checks.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlopt.grading import codec

__all__ = ["Case", "CaseData", "ExerciseData", "Mistake", "Outcome", "call"]


class Case:
    """One scenario: a label the student reads, and the arguments of the call.

    ``Case("large logits", z, axis=1)`` calls ``fn(z, axis=1)``. Arguments must be plain data
    (numbers, strings, numpy arrays, lists/tuples/dicts of those, or functions from ``dlopt``).
    """

    def __init__(self, label: str, *args, **kwargs):
        self.label = label
        self.args = args
        self.kwargs = kwargs

    def __repr__(self):
        return f"Case({self.label!r})"


@dataclass
class Mistake:
    """A classic wrong answer: ``fn`` computes it, ``message`` explains it to the student."""

    message: str
    fn: Callable[..., Any]


@dataclass
class Outcome:
    """What one call produced: a value, or an exception (by type names and message)."""

    value: Any = None
    error: str | None = None  # exception type name
    error_types: tuple[str, ...] = ()  # the exception's class and its bases, by name
    message: str = ""
    mutated: tuple[str, ...] = ()  # arguments the call changed in place

    @property
    def raised(self) -> bool:
        return self.error is not None

    def to_plain(self) -> dict:
        if self.raised:
            return {"error": self.error, "error_types": list(self.error_types),
                    "message": self.message[:2000]}
        try:
            return {"value": codec.encode(self.value), "mutated": list(self.mutated)}
        except codec.UnsupportedValue as exc:
            return {"error": "UnsupportedValue", "error_types": ["UnsupportedValue"],
                    "message": f"returned {exc}, which is not a plain value"}

    @classmethod
    def from_plain(cls, data) -> Outcome:
        """Rebuild an outcome from plain data; malformed data becomes an error outcome."""
        try:
            if "error" in data:
                return cls(error=str(data["error"])[:200],
                           error_types=tuple(str(t)[:200] for t in data.get("error_types", [])),
                           message=str(data.get("message", ""))[:2000])
            return cls(value=codec.decode(data["value"]),
                       mutated=tuple(str(m)[:100] for m in data.get("mutated", [])))
        except Exception as exc:  # noqa: BLE001 - anything malformed is the submission's fault
            return cls(error="UnreadableResult", error_types=("UnreadableResult",),
                       message=f"the grader could not read this result ({exc})")


def _copy_args(args, kwargs):
    return copy.deepcopy(args), copy.deepcopy(kwargs)


def _same_plain(a, b) -> bool:
    if type(a) is np.ndarray or type(b) is np.ndarray:
        return (type(a) is type(b) and a.shape == b.shape and a.dtype == b.dtype
                and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f")))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same_plain, a, b))
    if isinstance(a, dict):
        return (type(b) is dict and a.keys() == b.keys()
                and all(_same_plain(a[k], b[k]) for k in a))
    return a is b or a == b


def call(fn: Callable, case: Case | CaseData, *, quiet: bool = False,
         driver: Callable | None = None) -> Outcome:
    """Call ``fn`` on fresh copies of ``case``'s arguments and record what happened.

    ``case`` is a :class:`Case` or a :class:`CaseData` (the same scenario, read back from
    plain data): only its ``args`` and ``kwargs`` are used. With a ``driver`` the call is
    ``driver(fn, *args, **kwargs)``: the driver (a function in a ``dlopt`` module) uses ``fn``
    several times, e.g. 100 steps of an update rule.
    ``quiet`` silences numpy and Python warnings (used for references and mistakes, whose
    overflow warnings are expected, never for the student's own function).
    """
    args, kwargs = _copy_args(case.args, case.kwargs)
    if driver is not None:
        target, args = driver, (fn, *args)
    else:
        target = fn
    try:
        if quiet:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = target(*args, **kwargs)
        else:
            value = target(*args, **kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit from student code is an outcome
        names = tuple(t.__name__ for t in type(exc).__mro__)
        return Outcome(error=type(exc).__name__, error_types=names, message=str(exc))
    given = args[1:] if driver is not None else args
    mutated = tuple(
        [f"argument {i + 1}" for i, (a, b) in enumerate(zip(given, case.args, strict=True))
         if not _same_plain(a, b)]
        + [name for name in kwargs if not _same_plain(kwargs[name], case.kwargs[name])]
    )
    return Outcome(value=value, mutated=mutated)


@dataclass
class CaseData:
    """A scenario with everything needed to judge it, in plain data."""

    label: str
    hidden: bool
    args: tuple
    kwargs: dict
    expected: Outcome
    mistake_outputs: list[Outcome] = field(default_factory=list)


@dataclass
class ExerciseData:
    """An exercise ready to be judged: scenarios, expected outcomes, mistakes' outcomes."""

    function: str
    rtol: float
    atol: float
    mistakes: list[str]
    cases: list[CaseData]
    driver: Callable | None = None

    def to_plain(self) -> dict:
        return {
            "function": self.function, "rtol": self.rtol, "atol": self.atol,
            "driver": None if self.driver is None else codec.encode(self.driver),
            "mistakes": list(self.mistakes),
            "cases": [{
                "label": c.label, "hidden": c.hidden,
                "args": codec.encode(list(c.args)), "kwargs": codec.encode(dict(c.kwargs)),
                "expected": c.expected.to_plain(),
                "mistake_outputs": [o.to_plain() for o in c.mistake_outputs],
            } for c in self.cases],
        }

    @classmethod
    def from_plain(cls, data: dict) -> ExerciseData:
        return cls(
            function=str(data["function"]), rtol=float(data["rtol"]), atol=float(data["atol"]),
            mistakes=[str(m) for m in data["mistakes"]],
            driver=None if data.get("driver") is None else codec.decode(data["driver"]),
            cases=[CaseData(
                label=str(c["label"]), hidden=bool(c["hidden"]),
                args=tuple(codec.decode(c["args"])), kwargs=codec.decode(c["kwargs"]),
                expected=Outcome.from_plain(c["expected"]),
                mistake_outputs=[Outcome.from_plain(o) for o in c["mistake_outputs"]],
            ) for c in data["cases"]],
        )
