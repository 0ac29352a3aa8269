"""Keeping a graded submission, in nbgrader's layout, in an order that survives a kill.

First the files formgrader and ``nbgrader export`` read (``submitted/`` as handed in,
``autograded/`` with each check's verdict as its output), then the gradebook (one
transaction), and ``results.json`` last: it marks the submission as done. A batch killed at
any point and run again therefore regrades what was not finished, and nothing twice. Only the
batch's main thread calls :func:`record`: the gradebook has a single writer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat

from autograder import gradebook
from autograder.assemble import is_answer_cell, is_check_cell, nbgrader_meta
from autograder.course import Course
from autograder.results import SubmissionResult, atomic_write, write_result
from autograder.timestamps import parse_time


def autograded_notebook(release: nbformat.NotebookNode, submission: nbformat.NotebookNode,
                        result: SubmissionResult) -> nbformat.NotebookNode:
    """The release notebook with the student's answers and each check's verdict as its output."""
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    answers: dict[str, list[str]] = {}
    for cell in submission.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid and cell.get("cell_type") == "code":
            answers.setdefault(gid, []).append(cell.get("source", ""))
    verdicts = {c.grade_id: c for c in result.checks}
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if is_answer_cell(cell) and cell.cell_type == "code":
            cell.source = "\n\n".join(answers.get(gid, ["# (this answer cell was deleted)"]))
        if is_check_cell(cell) and gid in verdicts:
            check = verdicts[gid]
            text = "\n".join(e.message for e in check.exercises)
            if check.score >= check.points:
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
            else:
                cell.outputs = [nbformat.v4.new_output(
                    "error", ename="CheckFailed", evalue=text, traceback=text.splitlines())]
    return nb


def record(course: Course, result: SubmissionResult, original: Path,
           release: nbformat.NotebookNode, submission: nbformat.NotebookNode) -> None:
    """Keep a graded submission: ``original`` (the file as handed in), the autograded
    notebook, the gradebook, then results.json."""
    lesson, sid = result.lesson, result.student_id
    submitted = course.submitted / sid / lesson / f"{lesson}.ipynb"
    submitted.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(original, submitted)
    atomic_write(course.autograded / sid / lesson / f"{lesson}.ipynb",
                 nbformat.writes(autograded_notebook(release, submission, result)))
    gradebook.record_submission(course, lesson, sid, {c.grade_id: c.score for c in result.checks},
                                flagged=bool(result.flags),
                                submitted_at=parse_time(result.submitted_at)
                                if result.submitted_at else None)
    write_result(course, result)


def record_time(course: Course, result: SubmissionResult) -> None:
    """An unchanged submission handed in again (a new ``timestamp.txt``, a new table): keep
    its grade, record its new time (gradebook first, results.json last, as :func:`record`)."""
    gradebook.record_submission(course, result.lesson, result.student_id,
                                {c.grade_id: c.score for c in result.checks},
                                flagged=bool(result.flags),
                                submitted_at=parse_time(result.submitted_at))
    write_result(course, result)
