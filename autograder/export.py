"""``export``: the gradebook as a CSV, one row per student and lesson."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from autograder.course import Course, UsageError
from autograder.gradebook import scores_table

COLUMNS = ("student_id", "lesson", "score", "max_score")


def export_csv(course: Course, path: Path) -> int:
    """Write ``student_id,lesson,score,max_score`` rows to ``path``; return the row count."""
    if path.is_dir():
        raise UsageError(f"'{path}' is a folder; give a file name such as grades.csv")
    if not path.parent.resolve().is_dir():
        raise UsageError(f"folder '{path.parent}' does not exist")
    rows = scores_table(course)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for student_id, lesson, score, max_score in rows:
        writer.writerow((student_id, lesson, f"{score:g}", f"{max_score:g}"))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return len(rows)
