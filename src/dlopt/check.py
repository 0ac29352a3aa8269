"""Checks for graded exercises: one definition serves the notebook and the grader.

A test cell defines an :class:`Exercise` (the function under test, public scenarios, a trusted
reference such as torch, and the classic mistakes it recognises by name), adds hidden
scenarios inside nbgrader's ``### BEGIN HIDDEN TESTS`` block, and ends with
``exercise.check(fn)``.

- In a student's notebook, ``check`` runs the public scenarios against the reference and
  prints what passed, or raises :class:`CheckFailed` with a message in the student's terms.
- When the grader runs the *instructor's* notebook it sets ``DLOPT_EXPORT_EXERCISES=1``;
  ``check`` then publishes every scenario's inputs, the instructor's outputs and each
  mistake's outputs as plain data (:mod:`dlopt.codec`). The grader feeds the same inputs to
  the student's function in the student's own kernel (:mod:`dlopt.probe`), brings back plain
  data only, and calls :func:`judge` itself. Nothing the student's kernel says is a verdict.

:func:`judge` is the single place where outputs become a verdict and a message, so the
visible check and the grader say the same thing for the same output.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlopt import codec

__all__ = [
    "EXERCISE_MIME",
    "CheckFailed",
    "Case",
    "Exercise",
    "ExerciseData",
    "Mistake",
    "Outcome",
    "Verdict",
    "call",
    "judge",
]

#: MIME type of the display output that carries an exported exercise to the grader.
EXERCISE_MIME = "application/vnd.dlopt.exercise+json"
EXPORT_ENV = "DLOPT_EXPORT_EXERCISES"


class CheckFailed(AssertionError):
    """A visible check failed. Shown in Jupyter as the message alone, without a traceback."""

    def _render_traceback_(self):  # IPython uses this instead of the traceback
        return [f"\x1b[31m{line}\x1b[0m" if i == 0 else line
                for i, line in enumerate(str(self).splitlines())]


# ---------------------------------------------------------------------------------------------
# Defining an exercise
# ---------------------------------------------------------------------------------------------
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


def call(fn: Callable, case: Case, *, quiet: bool = False,
         driver: Callable | None = None) -> Outcome:
    """Call ``fn`` on fresh copies of ``case``'s arguments and record what happened.

    With a ``driver`` the call is ``driver(fn, *args, **kwargs)``: the driver (a function in a
    ``dlopt`` module) uses ``fn`` several times, e.g. 100 steps of an update rule.
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


class Exercise:
    """A graded function: scenarios, a trusted reference, and its classic mistakes.

    Parameters
    ----------
    function : str
        Name of the function under test, as the student defines it in the notebook.
    reference : callable
        Trusted oracle with the same signature (torch, autograd or a numerical check),
        used for the visible check. The grader uses the instructor's solution instead and
        refuses to export an exercise whose solution disagrees with its reference.
    cases : list of Case
        Public scenarios, shown to the student.
    mistakes : list of Mistake
        Classic wrong variants; a wrong output that matches one is named in the feedback.
    rtol, atol : float
        Tolerances of ``numpy.isclose`` used for every comparison.
    driver : callable, optional
        A function from a ``dlopt`` module called as ``driver(fn, *case_args)`` instead of
        ``fn(*case_args)``, for exercises checked over many calls (an update rule over 100
        steps, say). The reference and the mistakes are driven the same way.
    """

    def __init__(self, function: str, *, reference: Callable, cases: list[Case],
                 mistakes: list[Mistake] = (), rtol: float = 1e-5, atol: float = 1e-8,
                 driver: Callable | None = None):
        if driver is not None:
            codec.encode(driver)  # a driver travels to the student's kernel by reference
        self.driver = driver
        self.function = function
        self.reference = reference
        self.cases = list(cases)
        self.hidden_cases: list[Case] = []
        self.mistakes = list(mistakes)
        self.rtol = rtol
        self.atol = atol

    def add_hidden(self, *cases: Case) -> None:
        """Scenarios the student does not see (put this call in a hidden-tests block)."""
        self.hidden_cases.extend(cases)

    def _all_cases(self):
        return [(c, False) for c in self.cases] + [(c, True) for c in self.hidden_cases]

    def collect(self, expected_from: Callable) -> ExerciseData:
        """Evaluate ``expected_from`` and every mistake on every scenario."""
        cases = []
        for case, hidden in self._all_cases():
            cases.append(CaseData(
                label=case.label, hidden=hidden, args=case.args, kwargs=case.kwargs,
                expected=call(expected_from, case, quiet=True, driver=self.driver),
                mistake_outputs=[call(m.fn, case, quiet=True, driver=self.driver)
                                 for m in self.mistakes],
            ))
        return ExerciseData(function=self.function, rtol=self.rtol, atol=self.atol,
                            mistakes=[m.message for m in self.mistakes], cases=cases,
                            driver=self.driver)

    def check(self, fn: Callable) -> None:
        """Check ``fn`` on every scenario defined here and report like the grader would.

        Prints a ✓ line when every scenario passes; raises :class:`CheckFailed` (or
        ``NotImplementedError`` for an unanswered stub) with the reason otherwise.
        """
        if os.environ.get(EXPORT_ENV) == "1":
            self._export(fn)
            return
        data = self.collect(self.reference)
        verdict = judge(data, [call(fn, case, driver=self.driver)
                               for case, _ in self._all_cases()])
        if verdict.not_implemented:
            raise NotImplementedError(verdict.message)
        if not verdict.passed:
            raise CheckFailed(verdict.message)
        print(verdict.message)

    def _export(self, solution: Callable) -> None:
        """Instructor side: publish scenarios, the solution's outputs and mistakes' outputs."""
        from IPython.display import publish_display_data

        data = self.collect(solution)
        reference = self.collect(self.reference)
        agreement = judge(reference, [c.expected for c in data.cases])
        if not agreement.passed:
            raise CheckFailed(f"The instructor's solution disagrees with the reference for "
                              f"{self.function}:\n{agreement.message}")
        publish_display_data({EXERCISE_MIME: data.to_plain(),
                              "text/plain": f"exported checks for {self.function}"})


# ---------------------------------------------------------------------------------------------
# Judging: the only place an output becomes a verdict
# ---------------------------------------------------------------------------------------------
@dataclass
class CaseVerdict:
    label: str
    hidden: bool
    passed: bool
    problem: str = ""  # what is wrong, in the student's terms
    mistake: str = ""  # the classic mistake the output matches, if any


@dataclass
class Verdict:
    function: str
    cases: list[CaseVerdict]
    not_implemented: bool = False

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases)

    @property
    def n_passed(self) -> int:
        return sum(c.passed for c in self.cases)

    @property
    def message(self) -> str:
        name = self.function
        if self.not_implemented:
            return (f"{name} is not implemented yet (it raised NotImplementedError): "
                    f"replace the `raise NotImplementedError` line in its cell with your code.")
        n_public = sum(not c.hidden for c in self.cases)
        n_hidden = len(self.cases) - n_public
        if self.passed:
            hidden = f" and {n_hidden} hidden" if n_hidden else ""
            return f"✓ {name}: all {n_public} public{hidden} scenarios pass."
        failed = [c for c in self.cases if not c.passed]
        lines = [f"✗ {name}: {self.n_passed} of {len(self.cases)} scenarios pass."]
        for c in failed[:3]:
            kind = "hidden scenario" if c.hidden else "scenario"
            lines.append(f"  {kind} '{c.label}': {c.problem}")
            if c.mistake:
                lines.append(f"    This matches a classic mistake: {c.mistake}")
        if len(failed) > 3:
            lines.append(f"  ... and {len(failed) - 3} more failing scenarios.")
        return "\n".join(lines)


def _fmt(x) -> str:
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.6g}"
    return str(x)


def _as_numeric(value):
    """Numbers and numeric arrays as an ndarray; anything else as None."""
    if type(value) is np.ndarray:
        return value if value.dtype.kind in "biuf" else None
    if type(value) in (bool, int, float) or isinstance(value, np.generic):
        return np.asarray(value)
    return None


def _index(flat_index: int, shape) -> str:
    if not shape:
        return ""
    idx = np.unravel_index(flat_index, shape)
    return f" at index {idx[0] if len(idx) == 1 else tuple(int(i) for i in idx)}"


def compare(actual, expected, rtol: float, atol: float, where: str = "") -> str:
    """Return '' when ``actual`` matches ``expected``, else what differs, in plain words."""
    exp_arr = _as_numeric(expected)
    if exp_arr is not None:
        act_arr = _as_numeric(actual)
        want = (f"an array of shape {exp_arr.shape}" if type(expected) is np.ndarray
                else "a number")
        if act_arr is None:
            got = (f"an array of dtype {actual.dtype}" if isinstance(actual, np.ndarray)
                   else codec.describe_type(actual))
            return f"{where}returned {got}; expected {want} of numbers"
        if act_arr.shape != exp_arr.shape:
            hint = ""
            if act_arr.shape == exp_arr.shape[::-1] and act_arr.ndim > 1:
                hint = " (transposed?)"
            elif act_arr.size == 1 and exp_arr.size > 1:
                hint = " (did a sum or mean reduce it?)"
            elif act_arr.size == exp_arr.size:
                hint = " (same entries, different shape: check keepdims or reshape)"
            elif act_arr.ndim == exp_arr.ndim:
                hint = " (reduced or broadcast along the wrong axis?)"
            return f"{where}returned shape {act_arr.shape}, expected {exp_arr.shape}{hint}"
        if act_arr.dtype.kind == "b" and exp_arr.dtype.kind == "f":
            act_arr = act_arr.astype(float)
        act = act_arr.astype(np.float64).ravel()
        exp = exp_arr.astype(np.float64).ravel()
        ok = np.isclose(act, exp, rtol=rtol, atol=atol, equal_nan=True)
        if ok.all():
            return ""
        bad = np.flatnonzero(~ok)
        i = int(bad[0])
        nonfinite = np.flatnonzero(~np.isfinite(act) & np.isfinite(exp))
        if nonfinite.size:
            j = int(nonfinite[0])
            return (f"{where}your output has {_fmt(act[j])}{_index(j, act_arr.shape)} where "
                    f"{_fmt(exp[j])} was expected (overflow, or 0/0?)")
        if exp_arr.ndim == 0:
            return f"{where}returned {_fmt(act[0])}, expected {_fmt(exp[0])}"
        message = (f"{where}{bad.size} of {act.size} entries are wrong; the first"
                   f"{_index(i, act_arr.shape)}: got {_fmt(act[i])}, expected {_fmt(exp[i])}")
        with np.errstate(invalid="ignore"):
            err = np.where(ok, -1.0, np.abs(act - exp))
        err[~np.isfinite(err)] = -1.0
        k = int(np.argmax(err))
        if err[k] > 0 and bad.size > 1:
            message += f"; largest error {_fmt(err[k])}{_index(k, act_arr.shape)}"
        return message
    if type(expected) in (tuple, list):
        if type(actual) not in (tuple, list):
            return (f"{where}returned {codec.describe_type(actual)}; expected a "
                    f"{type(expected).__name__} of {len(expected)} items")
        if len(actual) != len(expected):
            return f"{where}returned {len(actual)} items, expected {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            problem = compare(a, e, rtol, atol, f"{where}item {i}: ")
            if problem:
                return problem
        return ""
    if type(expected) is dict:
        if type(actual) is not dict:
            return f"{where}returned {codec.describe_type(actual)}; expected a dict"
        missing = sorted(set(expected) - set(actual))
        if missing:
            return f"{where}the dict is missing key(s) {', '.join(map(repr, missing))}"
        for key in expected:
            problem = compare(actual[key], expected[key], rtol, atol, f"{where}[{key!r}]: ")
            if problem:
                return problem
        return ""
    if type(actual) is type(expected):
        try:
            if bool(actual == expected):
                return ""
        except (TypeError, ValueError):  # == gave an array, or refused
            pass
    return f"{where}returned {_short(actual)}, expected {_short(expected)}"


def _short(value) -> str:
    text = repr(value) if type(value) is not np.ndarray else f"an array of shape {value.shape}"
    return text if len(text) <= 80 else text[:77] + "..."


def _value_problem(actual: Outcome, expected: Outcome, rtol: float, atol: float) -> str:
    """What differs between two outcomes' values or exceptions ('' if nothing)."""
    if expected.raised:
        if actual.raised and expected.error in actual.error_types:
            return ""
        got = f"raised {actual.error}" if actual.raised else "returned normally"
        return f"should raise {expected.error} ({expected.message}), but {got}"
    if actual.raised:
        detail = f": {actual.message}" if actual.message else ""
        return f"raised {actual.error}{detail}"
    return compare(actual.value, expected.value, rtol, atol)


def _outcome_problem(actual: Outcome, expected: Outcome, rtol: float, atol: float) -> str:
    problem = _value_problem(actual, expected, rtol, atol)
    if not problem and actual.mutated:
        return (f"changed its input ({', '.join(actual.mutated)}) in place; "
                f"compute a new array instead of writing into the caller's")
    return problem


def _matches_mistake(actual: Outcome, wrong: Outcome, expected: Outcome, rtol: float,
                     atol: float) -> bool:
    """The output is this mistake's: same values, and the same (non-)mutation of inputs.

    A mistake that raised is never matched: an exception says nothing about which formula a
    learner wrote (a missing keepdims and a wrong axis raise the same ValueError).
    """
    if wrong.raised:
        return False
    differs = bool(_value_problem(wrong, expected, rtol, atol)) or bool(wrong.mutated)
    return (differs and not _value_problem(actual, wrong, rtol, atol)
            and bool(actual.mutated) == bool(wrong.mutated))


def judge(data: ExerciseData, actual: list[Outcome]) -> Verdict:
    """Compare a function's outcomes with the expected ones, scenario by scenario."""
    verdicts = []
    not_implemented = bool(actual) and all(
        o.raised and "NotImplementedError" in o.error_types for o in actual)
    for case, outcome in zip(data.cases, actual, strict=False):
        problem = _outcome_problem(outcome, case.expected, data.rtol, data.atol)
        mistake = ""
        if problem:
            for message, wrong in zip(data.mistakes, case.mistake_outputs, strict=False):
                if _matches_mistake(outcome, wrong, case.expected, data.rtol, data.atol):
                    mistake = message
                    break
        verdicts.append(CaseVerdict(case.label, case.hidden, not problem, problem, mistake))
    for case in data.cases[len(actual):]:
        verdicts.append(CaseVerdict(case.label, case.hidden, False, "was not run"))
    return Verdict(data.function, verdicts, not_implemented)
