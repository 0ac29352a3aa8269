"""The results model, and its file: ``autograded/STUDENT/LESSON/results.json``.

One :class:`SubmissionResult` per graded submission holds everything the other commands need
(scores per check cell, each exercise's message and scenarios, flags, notes, and the
fingerprint of what graded it), so ``feedback`` and ``export`` read these files and never
re-run anything. The file is written last and atomically: its presence marks a submission as
done, which is what makes a killed batch resumable.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from autograder.course import Course


@dataclass
class ExerciseResult:
    function: str
    passed: bool
    message: str
    cases: list[dict]  # per scenario: label, hidden, passed, problem, mistake (the named one)
    # Every scenario raised NotImplementedError: the stub was left as released (the class
    # report counts these apart from wrong answers). Results written before it default to False.
    not_implemented: bool = False


@dataclass
class CheckResult:
    grade_id: str
    points: float
    score: float
    exercises: list[ExerciseResult]


@dataclass
class SubmissionResult:
    student_id: str
    lesson: str
    score: float
    max_score: float
    checks: list[CheckResult]
    flags: list[str] = field(default_factory=list)  # what the instructor should look at
    cell_errors: list[dict] = field(default_factory=list)  # errors in the student's own cells
    notes: list[str] = field(default_factory=list)  # what the student should know about the run
    fingerprint: str = ""  # one hash of the submission and of what graded it (skip if unchanged)
    # What the fingerprint covers, hash by hash (autograder.fingerprint), and what had changed
    # since the previous grading: so an instructor can see why a submission was regraded.
    fingerprint_parts: dict = field(default_factory=dict)
    regraded_because: list[str] = field(default_factory=list)
    # Seconds the grader spent on the submission (assembling, running the student's kernel,
    # judging); None in results written before it was recorded.
    runtime_s: float | None = None
    # When it was handed in (ISO 8601, UTC) and where that time was read
    # (autograder.timestamps); '' in results written before it was recorded.
    submitted_at: str = ""
    submitted_from: str = ""


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def results_path(course: Course, lesson: str, student_id: str) -> Path:
    return course.autograded / student_id / lesson / "results.json"


def write_result(course: Course, result: SubmissionResult) -> None:
    atomic_write(results_path(course, result.lesson, result.student_id),
                 json.dumps(asdict(result), indent=1))


def _known(cls, data: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def result_from_dict(data: dict) -> SubmissionResult:
    """Rebuild a result from its JSON (fields this version does not know are ignored, fields
    added since the file was written take their defaults)."""
    data = _known(SubmissionResult, data)
    data["checks"] = [CheckResult(**{**_known(CheckResult, c), "exercises": [
        ExerciseResult(**_known(ExerciseResult, e)) for e in c["exercises"]]})
                      for c in data["checks"]]
    return SubmissionResult(**data)


def read_result(course: Course, lesson: str, student_id: str) -> SubmissionResult | None:
    """The student's last recorded result for ``lesson``, or None (none yet, or unreadable)."""
    try:
        data = json.loads(results_path(course, lesson, student_id).read_text(encoding="utf-8"))
        return result_from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def graded_lessons(course: Course) -> list[str]:
    """The lessons with at least one recorded result, in order."""
    return [lesson for lesson in course.lessons()
            if next(course.autograded.glob(f"*/{lesson}/results.json"), None) is not None]


def load_results(course: Course, lesson: str) -> list[SubmissionResult]:
    """Every recorded result of ``lesson``, by student id."""
    return [result_from_dict(json.loads(path.read_text(encoding="utf-8")))
            for path in sorted(course.autograded.glob(f"*/{lesson}/results.json"))]


def scan_results(course: Course, lesson: str) -> tuple[list[SubmissionResult], list[str]]:
    """Like :func:`load_results`, but a file that cannot be read (edited by hand, from a
    much older grader) is skipped: returns the results, and the student folders skipped."""
    results, unreadable = [], []
    for path in sorted(course.autograded.glob(f"*/{lesson}/results.json")):
        try:
            results.append(result_from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            unreadable.append(path.parent.parent.name)
    return results, unreadable
