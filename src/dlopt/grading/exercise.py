"""Defining a graded exercise: one definition serves the instructor's notebook and the grader.

A check cell of the instructor's notebook defines an :class:`Exercise` (the function under
test, public scenarios, a trusted reference such as torch, and the classic mistakes it
recognises by name), adds hidden scenarios inside nbgrader's ``### BEGIN HIDDEN TESTS`` block,
and ends with ``exercise.check(fn)``.

- Run normally (the instructor's notebook), ``check`` runs the scenarios against the
  reference and prints what passed, or raises :class:`~dlopt.grading.judge.CheckFailed` with a
  message in the student's terms.
- When the grader (or ``release``) runs the instructor's notebook it sets
  ``DLOPT_EXPORT_EXERCISES=1``; ``check`` then publishes every scenario's inputs, the
  instructor's outputs and each mistake's outputs as plain data
  (:class:`~dlopt.grading.scenario.ExerciseData`). Nothing the student's kernel says is a
  verdict: the grader calls :func:`~dlopt.grading.judge.judge` itself.
- The student's release never runs it: ``python -m autograder release`` replaces every check
  cell with the public scenarios of its exports, as data, checked by
  :func:`dlopt.grading.baked.check` (same judge, same messages).

This module is instructor material by use (its references and mistakes are code), but holds
no answer: it is the machinery that evaluates them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from dlopt.grading import codec
from dlopt.grading.baked import remember
from dlopt.grading.judge import CheckFailed, judge, report, try_function
from dlopt.grading.scenario import Case, CaseData, ExerciseData, Mistake, call

__all__ = ["EXERCISE_MIME", "EXPORT_ENV", "Exercise"]

#: MIME type of the display output that carries an exported exercise to the grader.
EXERCISE_MIME = "application/vnd.dlopt.exercise+json"
EXPORT_ENV = "DLOPT_EXPORT_EXERCISES"


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
        remember(data)  # for baked.recheck, as a baked check does
        report(try_function(data, fn))

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
