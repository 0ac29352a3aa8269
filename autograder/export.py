"""``export``: the gradebook as a CSV, one row per student and lesson (and for Gradescope and
Canvas); and what the class got wrong, per exercise and named mistake, as a CSV to analyse
elsewhere (the counts of :mod:`autograder.report`)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import NamedTuple

from autograder.course import Course, UsageError
from autograder.gradebook import scores_table
from autograder.late import load_policy
from autograder.results import atomic_write, graded_lessons, load_results, scan_results
from autograder.timestamps import iso


class ExportRow(NamedTuple):
    """One student and lesson: ``score`` as the checks gave it, ``final_score`` after the late
    policy's ``penalty`` (see :mod:`autograder.late`)."""

    student_id: str
    lesson: str
    score: float
    max_score: float
    submitted_at: str  # ISO 8601, UTC; '' without a submission
    late: str  # "1 day 2 h late", or '' when on time
    penalty: float
    final_score: float


COLUMNS = ExportRow._fields


def final_scores(course: Course) -> list[ExportRow]:
    """The gradebook's rows with the course's late policy applied."""
    policy = load_policy(course)
    rows = []
    for row in scores_table(course):
        lateness = policy.judge(row.lesson, row.submitted_at, row.score, row.max_score)
        rows.append(ExportRow(row.student_id, row.lesson, row.score, row.max_score,
                              iso(row.submitted_at) if row.submitted_at else "",
                              lateness.describe(), lateness.penalty, lateness.final_score))
    return rows


def export_csv(course: Course, path: Path) -> int:
    """Write one row of COLUMNS per student and lesson to ``path``; return the row count."""
    if path.is_dir():
        raise UsageError(f"'{path}' is a folder; give a file name such as grades.csv")
    if not path.parent.resolve().is_dir():
        raise UsageError(f"folder '{path.parent}' does not exist")
    rows = final_scores(course)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow((row.student_id, row.lesson, f"{row.score:g}", f"{row.max_score:g}",
                         row.submitted_at, row.late, f"{row.penalty:g}", f"{row.final_score:g}"))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return len(rows)


def export_gradescope(course: Course, folder: Path) -> int:
    """Gradescope autograder results (results.json spec), one file per student and lesson:
    ``FOLDER/STUDENT/LESSON/results.json``. Every exercise is a test; hidden scenarios are
    named in its output, never shown."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"'{folder}' is a file; give a folder for the Gradescope results")
    from autograder.gradescope import results_json

    count = 0
    for lesson in course.lessons():
        for result in load_results(course, lesson):
            data = results_json(result)
            path = folder / result.student_id / lesson / "results.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(tmp, path)
            count += 1
    return count


def export_canvas(course: Course, path: Path) -> int:
    """A CSV that Canvas's gradebook import accepts: one row per student, one column per
    graded lesson (the score after the late policy), a "Points Possible" row; students are
    matched by SIS Login ID."""
    if path.is_dir():
        raise UsageError(f"'{path}' is a folder; give a file name such as canvas.csv")
    rows = final_scores(course)
    lessons = sorted({row.lesson for row in rows})
    maxima = {row.lesson: row.max_score for row in rows}
    students = sorted({row.student_id for row in rows})
    scores = {(row.student_id, row.lesson): row.final_score for row in rows}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *lessons])
    writer.writerow(["    Points Possible", "", "", "", "", *(f"{maxima[x]:g}" for x in lessons)])
    for student in students:
        writer.writerow([student, "", "", student, "",
                         *(f"{scores.get((student, x), 0.0):g}" for x in lessons)])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return len(students)


def export_mistakes(course: Course, path: Path) -> int:
    """Per exercise and named mistake, how many students, for every graded lesson (the
    report's ``LESSON_mistakes.csv`` rows, one file); return the row count."""
    from autograder.report import csv_text, exercise_stats, mistakes_rows

    if path.is_dir():
        raise UsageError(f"'{path}' is a folder; give a file name such as mistakes.csv")
    if not path.parent.resolve().is_dir():
        raise UsageError(f"folder '{path.parent}' does not exist")
    rows = []
    for lesson in graded_lessons(course):
        rows += mistakes_rows(lesson, exercise_stats(scan_results(course, lesson)[0]))
    atomic_write(path, csv_text(rows))
    return len(rows)
