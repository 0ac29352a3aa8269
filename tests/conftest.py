"""Shared helpers: the course's lessons, and submissions built from the release."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
import pytest

from autograder.assemble import is_answer_cell, nbgrader_meta
from autograder.course import REPO_ROOT, Course

REPO = Course(REPO_ROOT)

LESSONS = REPO.lessons()


def answer_sources(lesson: str) -> dict[str, str]:
    """The instructor's answers, as a student would type them (marker lines removed)."""
    nb = nbformat.read(REPO.source_notebook(lesson), as_version=4)
    answers = {}
    for cell in nb.cells:
        if is_answer_cell(cell):
            lines = [line for line in cell.source.splitlines()
                     if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
            answers[nbgrader_meta(cell)["grade_id"]] = "\n".join(lines)
    return answers


def release_notebook(lesson: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO.release_notebook(lesson), as_version=4)


def submission(lesson: str, answers: dict[str, str] | None = None,
               extra_cells: list[str] = (), edit=None) -> nbformat.NotebookNode:
    """A student's notebook: the release with ``answers`` filled in (by answer grade_id),
    ``extra_cells`` (code) added right after the setup cell, then ``edit(nb)`` applied."""
    nb = copy.deepcopy(release_notebook(lesson))
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if answers and is_answer_cell(cell) and gid in answers:
            cell.source = answers[gid]
    setup = next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == "setup")
    for k, source in enumerate(extra_cells):
        cell = nbformat.v4.new_code_cell(source)
        if nb.nbformat_minor < 5:
            del cell["id"]  # cell ids exist from nbformat 4.5 on
        nb.cells.insert(setup + 1 + k, cell)
    if edit is not None:
        edit(nb)
    return nb


def write_submission(folder: Path, student: str, nb, name: str = "submission.ipynb") -> Path:
    path = folder / student / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def course_copy(tmp_path) -> Course:
    """A scratch course root with the repository's solutions/ and course/ (no gradebook)."""
    import shutil

    root = tmp_path / "course_root"
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder, root / folder)
    return Course(root)


_LESSON_FILE = re.compile(r"test_l(\d\d)_")
_LESSON_PARAM = re.compile(r"\[(?:.*-)?(\d\d)_[a-z]")


def pytest_collection_modifyitems(config, items):
    """Mark each test with its lesson (``-m lesson06``), by file name or lesson parameter."""
    for item in items:
        found = _LESSON_FILE.match(item.path.name) or _LESSON_PARAM.search(item.name)
        if found:
            item.add_marker(f"lesson{found.group(1)}")
