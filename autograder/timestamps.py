"""When each submission was handed in: the time a late policy judges, never the grading time.

Where the time comes from, first found first:

1. a table given to ``grade --timestamps FILE.csv`` (``student_id,timestamp`` rows: what an
   LMS export or a spreadsheet holds);
2. nbgrader's ``timestamp.txt`` in the student's folder (``nbgrader collect`` writes one);
3. the notebook file's modification time (an LMS download keeps it; a copy may not, which is
   why the source is recorded next to the time).

Times are read as ISO 8601 or as nbgrader writes them (``2027-01-15 23:59:00.000000 UTC``);
a time without a zone is taken as UTC. They are kept timezone-aware, in UTC.
"""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

from autograder.course import UsageError

NBGRADER_FILE = "timestamp.txt"


def parse_time(text: str) -> datetime:
    """A timestamp as an aware UTC datetime; ValueError with the text when unreadable."""
    cleaned = " ".join(str(text).split())
    if cleaned.upper().endswith(" UTC"):
        cleaned = cleaned[:-4]
    try:
        moment = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{text}' is not a time (expected ISO 8601, such as "
                         f"2027-01-15T23:59:00+01:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def read_table(path: Path) -> dict[str, datetime]:
    """``student_id -> time`` from a CSV with the columns student_id and timestamp."""
    if not path.is_file():
        raise UsageError(f"timestamps file '{path}' does not exist")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"student_id", "timestamp"} <= set(reader.fieldnames or []):
            raise UsageError(f"{path}: expected the columns student_id,timestamp (found "
                             f"{','.join(reader.fieldnames or []) or 'none'})")
        table = {}
        for line, row in enumerate(reader, start=2):
            student = (row["student_id"] or "").strip()
            try:
                table[student] = parse_time(row["timestamp"] or "")
            except ValueError as exc:
                raise UsageError(f"{path}, line {line}: {exc}") from None
    return table


def submitted_at(student_id: str, folder: Path, notebook: Path,
                 table: dict[str, datetime] | None = None) -> tuple[datetime, str]:
    """(time, where it came from) for one student's submission."""
    if table and student_id in table:
        return table[student_id], "timestamps table"
    stamp = folder / NBGRADER_FILE
    if stamp.is_file():
        try:
            return parse_time(stamp.read_text(encoding="utf-8").strip()), NBGRADER_FILE
        except (OSError, UnicodeDecodeError, ValueError):
            pass  # unreadable: fall back to the file's time, and say so
    return (datetime.fromtimestamp(notebook.stat().st_mtime, tz=timezone.utc),
            "file modification time")


def iso(moment: datetime) -> str:
    """``2027-01-15T22:59:00+00:00``: how results and exports write a time."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")
