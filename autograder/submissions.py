"""Finding and reading submissions: ``DIR/STUDENT_ID/NOTEBOOK.ipynb``, one per student.

Students hand in whatever their tools produce (Colab files, zips unpacked with ``__MACOSX``,
stray checkpoints, two notebooks, none), so this step is lenient about formats and strict
about ambiguity: a folder it cannot read as exactly one notebook is reported with a reason
and skipped, and the batch goes on. Only a missing or empty ``DIR`` stops the whole command.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nbformat

from autograder.course import UsageError
from autograder.timestamps import submitted_at

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
IGNORED_NAMES = {"__MACOSX", ".ipynb_checkpoints"}


class SubmissionProblem(Exception):
    """A submission that cannot be graded (unreadable, missing, ambiguous)."""


@dataclass
class Found:
    student_id: str
    notebook: Path | None
    problem: str = ""


def find_submissions(submissions: Path) -> list[Found]:
    """One entry per student folder of ``submissions``; raises UsageError if there are none."""
    if not submissions.exists():
        raise UsageError(f"submissions folder '{submissions}' does not exist")
    if not submissions.is_dir():
        raise UsageError(f"'{submissions}' is not a folder (expected one folder per student)")
    folders = sorted(p for p in submissions.iterdir()
                     if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_NAMES)
    if not folders:
        raise UsageError(f"'{submissions}' holds no student folders (expected DIR/STUDENT_ID/"
                         f"NOTEBOOK.ipynb)")
    found = []
    for folder in folders:
        if not STUDENT_ID.match(folder.name):
            found.append(Found(folder.name, None, "the folder name is not a valid student id "
                                                  "(letters, digits, . _ @ + - only)"))
            continue
        notebooks = sorted(p for p in folder.rglob("*.ipynb") if p.is_file() and not any(
            part.startswith(".") or part in IGNORED_NAMES
            for part in p.relative_to(folder).parts))
        if not notebooks:
            found.append(Found(folder.name, None, "no notebook (.ipynb) in the folder"))
        elif len(notebooks) > 1:
            names = ", ".join(str(p.relative_to(folder)) for p in notebooks)
            found.append(Found(folder.name, None, f"{len(notebooks)} notebooks ({names}): "
                                                  f"keep exactly one"))
        else:
            found.append(Found(folder.name, notebooks[0]))
    return found


def read_submission(path: Path) -> nbformat.NotebookNode:
    """Parse a submitted notebook leniently (Colab's and old Jupyter's files are fine)."""
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise SubmissionProblem(f"{path.name} is larger than {MAX_NOTEBOOK_BYTES >> 20} MB")
    try:
        text = path.read_text(encoding="utf-8")
        nb = nbformat.reads(text, as_version=4)
    except UnicodeDecodeError:
        raise SubmissionProblem(f"{path.name} is not a notebook (not UTF-8 text)") from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for bad files
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise SubmissionProblem(f"{path.name} is not a readable notebook ({reason})") from None
    cells = nb.get("cells")
    if not isinstance(cells, list) or not all(
            isinstance(c, dict) and isinstance(c.get("source", ""), str) for c in cells):
        raise SubmissionProblem(f"{path.name} is not a readable notebook (no list of cells)")
    return nb


@dataclass
class Readable:
    """A submission that parsed: where it is, the SHA-256 of its bytes, the notebook, and
    when it was handed in (see :mod:`autograder.timestamps`)."""

    student_id: str
    path: Path
    sha256: str
    notebook: nbformat.NotebookNode
    submitted_at: datetime
    submitted_from: str  # where that time was read


def read_all(found: list[Found], skipped,
             timestamps: dict[str, datetime] | None = None) -> list[Readable]:
    """The submissions that can be graded; ``skipped(student_id, reason)`` hears of the rest.
    ``timestamps`` (student id -> time) is the table given to ``grade --timestamps``."""
    readable = []
    for item in found:
        try:
            if item.problem:
                raise SubmissionProblem(item.problem)
            notebook = read_submission(item.notebook)
        except SubmissionProblem as exc:
            skipped(item.student_id, str(exc))
            continue
        digest = hashlib.sha256(item.notebook.read_bytes()).hexdigest()
        folder = next(p for p in item.notebook.parents if p.name == item.student_id)
        moment, source = submitted_at(item.student_id, folder, item.notebook, timestamps)
        readable.append(Readable(item.student_id, item.notebook, digest, notebook, moment,
                                 source))
    return readable
