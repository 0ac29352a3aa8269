"""Shared helpers: the course's lessons, and submissions built from the release."""

from __future__ import annotations

import copy
import os
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


@pytest.fixture(scope="session", autouse=True)
def reference_cache(pytestconfig, tmp_path_factory):
    """One folder of the instructor's exports for every course the tests build, this session
    and the next (pytest's cache folder): they are keyed by content, not by course folder, so
    each lesson's notebook runs once however many scratch courses grade it. Set as
    ``$AUTOGRADER_REFERENCE_CACHE`` for the grader's default, here and in its subprocesses."""
    from autograder.reference import CACHE_ENV

    cache = getattr(pytestconfig, "cache", None)  # None under -p no:cacheprovider
    folder = cache.mkdir("dlopt-reference") if cache else tmp_path_factory.mktemp("reference")
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


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


def lesson_of(file_name: str, test_name: str) -> str | None:
    """"06" for a test of lesson 06, by its file name or its lesson parameter."""
    found = _LESSON_FILE.match(file_name) or _LESSON_PARAM.search(test_name)
    return found.group(1) if found else None


def pytest_collection_modifyitems(config, items):
    """Mark each test with its lesson (``-m lesson06``)."""
    for item in items:
        lesson = lesson_of(item.path.name, item.name)
        if lesson:
            item.add_marker(f"lesson{lesson}")


def worker_group(nodeid: str) -> str:
    """The tests that must share one pytest-xdist worker, by node id:

    - ``browser``: the browser tests share one JupyterLab and one Chromium;
    - ``grader``: everything that grades (tests/autograder) runs sandboxes whose uids and
      process limits are per grading process, so two workers must not grade at once;
    - ``unprivileged``: the red team graded by an unprivileged user, and the user-namespace
      sandbox's traps (no shared uids there), beside the grader group;
    - ``lessonNN``: a lesson's tests share one kernel run of its notebooks (lesson_harness);
    - any other test is a group of its own; so is each test of ``tests/compat/`` (Colab's
      environment: their own kernels), to fill in beside the long groups. The classic
      notebook's browser test shares the browser group's Chromium.
    """
    path, _, name = nodeid.partition("::")
    if path.endswith("test_sandbox_userns.py") or path.endswith("test_redteam.py") and (
            "unprivileged" in name or re.search(r"\[(.*-)?userns(-.*)?\]$", name)):
        return "unprivileged"
    if nodeid.startswith("tests/compat/"):
        return nodeid  # hosts' stand-ins: their own kernels, nothing shared
    for folder, group in (("tests/browser/", "browser"), ("tests/autograder/", "grader")):
        if nodeid.startswith(folder):
            return group
    lesson = lesson_of(path.rsplit("/", 1)[-1], name)
    return f"lesson{lesson}" if lesson else nodeid


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent when it is not installed
def pytest_xdist_make_scheduler(config, log):
    """Schedule by :func:`worker_group`, in collection order (the two longest groups, grader
    and browser, come first and start at once). pytest-xdist's own ``--dist loadgroup`` reads
    ``xdist_group`` marks by rewriting node ids, which pytest 9 no longer lets it do."""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkerGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return ByWorkerGroup(config, log)
