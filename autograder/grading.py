"""``grade``: the grader's pipeline for one lesson, step by step.

Like nbgrader's ``autograde``, it reads top to bottom; each step is a module of its own:

1. find and read the submissions (:mod:`autograder.submissions`);
2. run the instructor's notebook for the expected values (:mod:`autograder.reference`);
3. fingerprint what decides a verdict (:mod:`autograder.fingerprint`), and keep the results
   of submissions graded before by the same (:mod:`autograder.batch`);
4. grade the others in parallel, each in a kernel of its own, verdicts decided here
   (:mod:`autograder.grade_one`), and record each one as it finishes
   (:mod:`autograder.record`, :mod:`autograder.results`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import nbformat

from autograder import gradebook
from autograder import sandbox as sandboxing
from autograder.batch import grade_pending, split_unchanged
from autograder.course import Course, UsageError
from autograder.fingerprint import grader_parts
from autograder.grade_one import RunOptions
from autograder.reference import cached_reference, default_cache
from autograder.release import record_in_gradebook
from autograder.results import SubmissionResult
from autograder.submissions import STUDENT_ID, find_submissions, read_all
from autograder.timestamps import read_table


def grade(course: Course, lesson: str, submissions: Path, *, workers: int | None = None,
          cell_timeout: float = 60, budget: float = 300, sandbox: str | bool = "auto",
          scheduler: str | None = None, force: bool = False, timestamps: Path | None = None,
          out: TextIO | None = None, err: TextIO | None = None) -> list[SubmissionResult]:
    """Grade every student folder in ``submissions`` for ``lesson``; return the results.

    ``sandbox`` names the backend of :mod:`autograder.sandbox` every student kernel runs in:
    ``auto`` (the default: root as root, userns otherwise), ``root`` or ``userns``; grading
    refuses to start where it cannot run. ``none`` (or False) runs student code with the
    grader's own rights, for trusted submissions only. ``scheduler`` grades on
    a Dask cluster; this process stays the only gradebook writer. A submission graded before,
    unchanged, by the same grader (see :mod:`autograder.fingerprint`), is not graded again
    unless ``force``. ``timestamps`` is a CSV of ``student_id,timestamp`` rows: when each
    submission was handed in (see :mod:`autograder.timestamps` for the other sources).
    """
    out, err = out or sys.stdout, err or sys.stderr
    lesson = course.check_lesson(lesson)
    requested = {True: "auto", False: "none"}.get(sandbox, sandbox)
    options = RunOptions(cell_timeout, budget, _check_isolation(requested, scheduler, err))
    table = read_table(timestamps) if timestamps else None
    found = find_submissions(submissions)
    release = _read_release(course, lesson)
    if not gradebook.has_lesson(course, lesson):
        record_in_gradebook(course, lesson)

    def skipped(student_id: str, reason: str) -> None:
        print(f"skipped {student_id}: {reason}", file=err)
        if STUDENT_ID.match(student_id):  # listed, so the export shows a 0
            gradebook.add_student(course, student_id)

    readable = read_all(found, skipped, table)
    if not readable:
        return []
    reference = cached_reference(course, lesson, default_cache(course))
    grader = grader_parts(course, lesson, reference, options)
    results, pending = split_unchanged(course, lesson, readable, grader, force=force, out=out)
    results += grade_pending(course, reference, release, pending, options, workers=workers,
                             scheduler=scheduler, out=out, err=err)
    return sorted(results, key=lambda r: r.student_id)


def _check_isolation(requested: str, scheduler: str | None, err: TextIO) -> str:
    """The sandbox backend to grade under; refuse to run student code unisolated unless asked
    to, and warn when asked to. With a scheduler, each Dask worker resolves ``auto`` itself."""
    if requested == "none":
        print("warning: grading WITHOUT a sandbox: student code runs with your rights and "
              "can read solutions/ and the gradebook", file=err)
        return requested
    if scheduler:
        return requested
    backend = sandboxing.choose(requested)
    if reason := sandboxing.unavailable(backend):
        raise UsageError(f"cannot isolate student code here ({backend} sandbox): {reason}")
    return backend


def _read_release(course: Course, lesson: str) -> nbformat.NotebookNode:
    path = course.release_notebook(lesson)
    if not path.exists():
        raise UsageError(f"{path} is missing: run 'python -m autograder release {lesson}' "
                         f"first")
    return nbformat.read(path, as_version=4)
