"""The visible checks of the student's release: check data, no check code.

``python -m autograder release`` runs the instructor's notebook once and replaces each check
cell of the student's copy by the cell's docstring (what is checked, kept as written) and one
call per exercise it checks::

    from dlopt.grading import check
    check("adam_step", adam_step, "eNrtXQl0VNd5fjPaN4QEEgIhJFYJsQgECCEQ...")

The string is the exercise's *public* scenarios as plain data
(:meth:`~dlopt.grading.scenario.ExerciseData.to_plain`): inputs, the instructor's outputs,
each named mistake's outputs and message, the tolerances and the driver (by reference), as
zlib-compressed JSON in base64 (:func:`pack`). No reference, no mistake and no helper travels
as code, and hidden scenarios never do (:func:`pack` refuses them).

:func:`check` calls the learner's function on each scenario, judges the outcomes with
:func:`~dlopt.grading.judge.judge` (as the grader does) and reports like
:meth:`~dlopt.grading.exercise.Exercise.check`: the same ✓ line, ``NotImplementedError`` for
an unanswered stub, :class:`~dlopt.grading.judge.CheckFailed` with the same message otherwise.
It imports neither torch nor scikit-learn: the expected values were computed once, by the
instructor, so a check gives the same verdict wherever the notebook runs (Colab keeps its own
torch). Only a driver that needs torch to run the learner's code (lesson 08's modules and
optimizers) imports it. Nothing but the notebook and the installed ``dlopt`` is needed.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Callable

from dlopt.grading.judge import report, try_function
from dlopt.grading.scenario import ExerciseData

__all__ = ["BAKED_FORMAT", "DamagedCheckData", "check", "pack", "public_only", "recheck",
           "remember", "unpack"]

#: Version of the packed layout; :func:`unpack` refuses any other.
BAKED_FORMAT = 1
_RESTORE = ("restore the cell as it was released (undo your edit, or copy the cell from a fresh "
            "download of the notebook)")


class DamagedCheckData(ValueError):
    """A check cell's data cannot be read: the cell was edited, or comes from another release."""


def public_only(plain: dict) -> dict:
    """``plain`` (:meth:`ExerciseData.to_plain`) with its hidden scenarios removed.

    Parameters
    ----------
    plain : dict
        An exported exercise, public and hidden scenarios.

    Returns
    -------
    dict
        A shallow copy whose ``cases`` are the public ones, in their order.
    """
    return {**plain, "cases": [case for case in plain["cases"] if not case["hidden"]]}


def pack(plain: dict) -> str:
    """Encode an exercise's public scenarios as the string a released check cell carries.

    Deterministic: the same data gives the same string (sorted keys, fixed compression level).

    Parameters
    ----------
    plain : dict
        :meth:`ExerciseData.to_plain` of the public scenarios alone (see :func:`public_only`).

    Returns
    -------
    str
        base64 (ASCII, no quotes or backslashes) of zlib-compressed JSON.

    Raises
    ------
    ValueError
        ``plain`` holds a hidden scenario: hidden scenarios never reach the student's release.
    """
    hidden = [case["label"] for case in plain["cases"] if case["hidden"]]
    if hidden:
        raise ValueError(f"{plain['function']}: hidden scenarios {hidden} must not be baked "
                         f"into the student's release (use public_only)")
    text = json.dumps({"format": BAKED_FORMAT, "exercise": plain}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True)
    return base64.b64encode(zlib.compress(text.encode("ascii"), 9)).decode("ascii")


def unpack(data: str) -> ExerciseData:
    """Read back what :func:`pack` wrote.

    Parameters
    ----------
    data : str
        The string of a released check cell.

    Returns
    -------
    ExerciseData

    Raises
    ------
    DamagedCheckData
        The string is not :func:`pack`'s output (edited, cut, or from another release), or
        it names a driver the installed ``dlopt`` does not have.
    """
    try:
        raw = zlib.decompress(base64.b64decode(data.encode("ascii"), validate=True))
        packed = json.loads(raw.decode("ascii"))
    except (AttributeError, UnicodeError, binascii.Error, zlib.error, ValueError) as exc:
        raise DamagedCheckData(f"this cell's check data cannot be read ({exc}): "
                               f"{_RESTORE}") from None
    if not isinstance(packed, dict) or packed.get("format") != BAKED_FORMAT:
        found = packed.get("format") if isinstance(packed, dict) else None
        raise DamagedCheckData(f"this cell's check data has format {found!r}; this version of "
                               f"dlopt reads format {BAKED_FORMAT}: download the notebook "
                               f"again, or update dlopt")
    try:
        return ExerciseData.from_plain(packed["exercise"])
    except (ImportError, AttributeError) as exc:  # a driver or argument dlopt no longer has
        raise DamagedCheckData(f"this check needs a part of dlopt that the installed version "
                               f"lacks ({exc}): the notebook and dlopt come from different "
                               f"releases of the course; update dlopt, or download the "
                               f"notebook again") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DamagedCheckData(f"this cell's check data is incomplete ({exc!r}): "
                               f"{_RESTORE}") from None


def check(function: str, fn: Callable, data: str) -> None:
    """Check the learner's ``fn`` on the public scenarios baked into a released check cell.

    Parameters
    ----------
    function : str
        The name the learner defines (``"adam_step"``); must be the one the data was exported
        for.
    fn : callable
        The learner's function (or class), called through the exercise's driver if it has one.
    data : str
        :func:`pack`'s output, as the release wrote it into the cell.

    Raises
    ------
    NotImplementedError
        ``fn`` is still the stub (every scenario raised ``NotImplementedError``).
    CheckFailed
        A scenario did not match: the message names it, the classic mistake the output
        matches if any, or what differs (shape, first wrong entry, ``nan``...).
    DamagedCheckData
        ``data`` cannot be read, or belongs to another function.
    """
    exercise = unpack(data)
    if exercise.function != function:
        raise DamagedCheckData(f"this cell's check data is for {exercise.function!r}, not "
                               f"{function!r}: {_RESTORE}")
    remember(exercise)
    report(try_function(exercise, fn))


#: The public scenarios of the check that ran last for each function, in this kernel.
_LAST_CHECKED: dict[str, ExerciseData] = {}


def remember(exercise: ExerciseData) -> None:
    """Keep ``exercise``'s public scenarios, so that :func:`recheck` can run them again."""
    public = [case for case in exercise.cases if not case.hidden]
    _LAST_CHECKED[exercise.function] = ExerciseData(
        function=exercise.function, rtol=exercise.rtol, atol=exercise.atol,
        mistakes=list(exercise.mistakes), cases=public, driver=exercise.driver)


def recheck(function: str, fn: Callable) -> None:
    """Run the last check of ``function`` again, on another function ``fn``.

    For a demonstration (lesson 00 shows what a failing check says): the same scenarios, the
    same messages as the check cell of ``function``. Works after that check cell has run,
    whether it carried baked data (the student's notebook) or an exercise definition (the
    instructor's).

    Raises
    ------
    NameError
        The check cell of ``function`` has not run in this kernel yet.
    """
    exercise = _LAST_CHECKED.get(function)
    if exercise is None:
        raise NameError(f"run the check cell of `{function}` first: this cell runs its "
                        f"scenarios again")
    report(try_function(exercise, fn))
