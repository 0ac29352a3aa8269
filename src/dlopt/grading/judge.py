"""Judging: the only place where outputs become a verdict and a message.

:func:`judge` compares a function's outcomes with an :class:`~dlopt.grading.scenario.ExerciseData`
scenario by scenario, and names the classic mistake a wrong output matches. The visible checks,
the baked checks of the student's release and the grader all call it, so each says the same
thing for the same output. :func:`try_function` (call a learner's function on every scenario,
then judge) and :func:`report` (tell the learner) are what a visible check runs: the
instructor's :meth:`~dlopt.grading.exercise.Exercise.check` and the release's
:func:`~dlopt.grading.baked.check` share them, so both print and raise the same things.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dlopt.grading import codec
from dlopt.grading.scenario import ExerciseData, Outcome, call

__all__ = ["CaseVerdict", "CheckFailed", "Verdict", "compare", "judge", "report", "try_function"]


class CheckFailed(AssertionError):
    """A visible check failed. Shown in Jupyter as the message alone, without a traceback."""

    def _render_traceback_(self):  # IPython uses this instead of the traceback
        return [f"\x1b[31m{line}\x1b[0m" if i == 0 else line
                for i, line in enumerate(str(self).splitlines())]


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


def _agreements(data: ExerciseData, actual: list[Outcome]) -> list[int]:
    """For each named mistake, on how many scenarios the function's outcome equals its output.

    Two mistakes can give the same output on one scenario and differ on others (NumPy's
    ``binomial`` draws ``random < q`` when q > 0.5 and ``random >= 1 - q`` otherwise); the one
    that agrees with the function on the most scenarios is the one it made.
    """
    counts = [0] * len(data.mistakes)
    for case, outcome in zip(data.cases, actual, strict=False):
        for k, wrong in enumerate(case.mistake_outputs[:len(counts)]):
            if (not wrong.raised and not _value_problem(outcome, wrong, data.rtol, data.atol)
                    and bool(outcome.mutated) == bool(wrong.mutated)):
                counts[k] += 1
    return counts


def judge(data: ExerciseData, actual: list[Outcome]) -> Verdict:
    """Compare a function's outcomes with the expected ones, scenario by scenario.

    A failing scenario names the classic mistake whose output it matches; when several match,
    the one that agrees with the function on the most scenarios (then the first listed).
    """
    verdicts = []
    not_implemented = bool(actual) and all(
        o.raised and "NotImplementedError" in o.error_types for o in actual)
    agreements = None
    for case, outcome in zip(data.cases, actual, strict=False):
        problem = _outcome_problem(outcome, case.expected, data.rtol, data.atol)
        mistake = ""
        if problem:
            matching = [k for k, wrong in enumerate(case.mistake_outputs[:len(data.mistakes)])
                        if _matches_mistake(outcome, wrong, case.expected, data.rtol, data.atol)]
            if len(matching) > 1:
                agreements = agreements or _agreements(data, actual)
                matching.sort(key=lambda k: -agreements[k])  # stable: ties keep the listed order
            if matching:
                mistake = data.mistakes[matching[0]]
        verdicts.append(CaseVerdict(case.label, case.hidden, not problem, problem, mistake))
    for case in data.cases[len(actual):]:
        verdicts.append(CaseVerdict(case.label, case.hidden, False, "was not run"))
    return Verdict(data.function, verdicts, not_implemented)


def try_function(data: ExerciseData, fn: Callable) -> Verdict:
    """Call ``fn`` on every scenario of ``data`` (through its driver) and judge the outcomes.

    Parameters
    ----------
    data : ExerciseData
        The scenarios and what they expect.
    fn : callable
        The learner's function (not silenced: its warnings are shown, as in any cell).

    Returns
    -------
    Verdict
    """
    return judge(data, [call(fn, case, driver=data.driver) for case in data.cases])


def report(verdict: Verdict) -> None:
    """Tell the learner what a visible check found, in a notebook cell.

    Prints the ✓ line when every scenario passes; raises ``NotImplementedError`` for an
    unanswered stub and :class:`CheckFailed` otherwise, each with :attr:`Verdict.message`.

    Parameters
    ----------
    verdict : Verdict
        What :func:`judge` (or :func:`try_function`) decided.

    Raises
    ------
    NotImplementedError
        Every scenario raised ``NotImplementedError``: the function is still the stub.
    CheckFailed
        A scenario did not match.
    """
    if verdict.not_implemented:
        raise NotImplementedError(verdict.message)
    if not verdict.passed:
        raise CheckFailed(verdict.message)
    print(verdict.message)
