"""The grading contract: what decides a verdict, in all three processes.

It runs in the instructor's kernel (exporting each exercise), in the student's kernel (the
visible checks, and the grader's probe) and in the grader (judging). Modules:

- :mod:`~dlopt.grading.scenario`: scenarios, outcomes, an exercise as plain data;
- :mod:`~dlopt.grading.judge`: the one function that turns outcomes into a verdict;
- :mod:`~dlopt.grading.exercise`: an exercise as the instructor defines it;
- :mod:`~dlopt.grading.baked`: the release's visible checks, which carry data and no code;
- :mod:`~dlopt.grading.codec`: the plain data that crosses between processes;
- :mod:`~dlopt.grading.probe`: the grader's call into the student's kernel;
- :mod:`~dlopt.grading.drivers`: functions that call a learner's function the way a check needs.
"""

from dlopt.grading.baked import DamagedCheckData, check, recheck
from dlopt.grading.exercise import EXERCISE_MIME, EXPORT_ENV, Exercise
from dlopt.grading.judge import (
    CaseVerdict,
    CheckFailed,
    Verdict,
    compare,
    judge,
    report,
    try_function,
)
from dlopt.grading.scenario import Case, CaseData, ExerciseData, Mistake, Outcome, call

__all__ = [
    "EXERCISE_MIME",
    "EXPORT_ENV",
    "Case",
    "CaseData",
    "CaseVerdict",
    "CheckFailed",
    "DamagedCheckData",
    "Exercise",
    "ExerciseData",
    "Mistake",
    "Outcome",
    "Verdict",
    "call",
    "check",
    "compare",
    "recheck",
    "judge",
    "report",
    "try_function",
]
