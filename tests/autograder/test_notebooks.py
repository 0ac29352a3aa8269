"""The lessons themselves: stored clean and released faithfully.

That they run (solved: every check passes; released: only the stubs stop) is tested once, by
tests/lessons/test_contract.py; their time against the 30 s budget by
benchmarks/notebook_runtimes.py."""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pytest
from conftest import LESSONS, REPO, answer_sources
from nbgrader.utils import compute_checksum

from autograder.assemble import is_answer_cell, is_check_cell, nbgrader_meta
from autograder.course import Course
from autograder.release import BAKED_CALL, baked_calls, release
from dlopt.grading import ExerciseData, Outcome
from dlopt.grading.baked import unpack

REPO_URL = "dlopt-course/deep-learning-optimization"


def all_notebooks():
    return [REPO.source_notebook(lesson) for lesson in LESSONS] + [
        REPO.release_notebook(lesson) for lesson in LESSONS]


def test_every_lesson_is_released():
    assert LESSONS[:2] == ["00_start_here", "01_activations"]
    released = sorted(p.name for p in REPO.release.iterdir() if p.is_dir())
    assert released == LESSONS


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_notebooks_are_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{path}: cells {dirty} have outputs or execution counts; strip them"


def _masked(path) -> tuple[str, list[list[ExerciseData]]]:
    """The notebook's text with every baked check's data and checksum masked, and that data.

    A check cell's checksum must match its source; the data is returned decoded.
    """
    nb = nbformat.read(path, as_version=4)
    baked = []
    for cell in nb.cells:
        if is_check_cell(cell):
            meta = nbgrader_meta(cell)
            assert meta.pop("checksum") == compute_checksum(cell), meta["grade_id"]
            baked.append([unpack(data) for _, data in baked_calls(cell.source)])
            cell.source = BAKED_CALL.sub(r'check("\1", \2, <data>)', cell.source)
    return nbformat.writes(nb), baked


def _same_numbers(a, b, rtol: float, atol: float) -> bool:
    """Plain values equal in structure, type and text, numbers within (rtol, atol)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (np.ndarray, np.generic)):
        return (a.shape == b.shape and a.dtype == b.dtype
                and bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)))
    if isinstance(a, float):
        return bool(np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_numbers(x, y, rtol, atol)
                                        for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_numbers(a[k], b[k], rtol, atol) for k in a)
    if isinstance(a, Outcome):
        return (a.error, a.error_types, a.message, a.mutated) == \
            (b.error, b.error_types, b.message, b.mutated) \
            and _same_numbers(a.value, b.value, rtol, atol)
    return a == b


def _same_exercise(ours: ExerciseData, theirs: ExerciseData) -> bool:
    """Equal, but for numbers that differ by less than 1 % of the check's own tolerance.

    The instructor's outputs are computed where the release runs; another CPU (another SIMD
    path of exp or a BLAS kernel) may change their last bits, never a verdict.
    """
    rtol, atol = ours.rtol / 100, ours.atol / 100
    header = ("function", "rtol", "atol", "mistakes", "driver")
    if any(getattr(ours, k) != getattr(theirs, k) for k in header) or \
            len(ours.cases) != len(theirs.cases):
        return False
    return all(
        (a.label, a.hidden) == (b.label, b.hidden)
        and _same_numbers((a.args, a.kwargs, a.expected, a.mistake_outputs),
                          (b.args, b.kwargs, b.expected, b.mistake_outputs), rtol, atol)
        for a, b in zip(ours.cases, theirs.cases, strict=True))


@pytest.mark.slow
def test_course_equals_a_fresh_release(course_copy, reference_cache):
    release(course_copy, cache=reference_cache)
    for lesson in LESSONS:
        fresh, committed = course_copy.release_notebook(lesson), REPO.release_notebook(lesson)
        if fresh.read_bytes() == committed.read_bytes():
            continue
        stale = (f"course/{lesson} is not what solutions/ generates: run "
                 f"'python -m autograder release {lesson}' and commit the result")
        (fresh_text, fresh_data), (text, data) = _masked(fresh), _masked(committed)
        assert fresh_text == text, stale
        assert all(_same_exercise(a, b) for cell_a, cell_b in zip(fresh_data, data, strict=True)
                   for a, b in zip(cell_a, cell_b, strict=True)), stale


@pytest.mark.slow
def test_release_is_deterministic(course_copy):
    """Byte for byte, with the instructor's notebook run afresh each time (no cache)."""
    release(course_copy, ["00_start_here"], cache=False)
    first = course_copy.release_notebook("00_start_here").read_bytes()
    release(course_copy, ["00_start_here"], cache=False)
    assert course_copy.release_notebook("00_start_here").read_bytes() == first


@pytest.mark.parametrize("lesson", LESSONS)
def test_student_release_holds_no_solution_or_hidden_test(lesson):
    text = REPO.release_notebook(lesson).read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "add_hidden",
                   "dlopt_instructor"):
        assert marker not in text, f"course/{lesson} leaks '{marker}'"
    released = nbformat.read(REPO.release_notebook(lesson), as_version=4)
    stubs = {nbgrader_meta(c)["grade_id"]: c.source for c in released.cells if is_answer_cell(c)}
    for grade_id, answer in answer_sources(lesson).items():
        assert 'raise NotImplementedError("replace this line with your code")' in stubs[grade_id]
        body = [line.strip() for line in answer.splitlines()
                if line.strip() and not line.strip().startswith(("def ", '"""', "#"))]
        leaked = [line for line in body if line not in stubs[grade_id].split('"""')[0]
                  and line in stubs[grade_id] and len(line) > 25 and "NotImplemented" not in line
                  and not _in_docstring(line, stubs[grade_id])]
        assert not leaked, f"{lesson}/{grade_id}: solution lines in the release: {leaked}"


def _in_docstring(line: str, source: str) -> bool:
    docstrings = re.findall(r'"""(.*?)"""', source, flags=re.S)
    return any(line in d for d in docstrings)


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_structure(lesson):
    """Colab install cell first, one setup cell, unique grade ids, checks worth points."""
    nb = nbformat.read(REPO.source_notebook(lesson), as_version=4)
    ids = [nbgrader_meta(c).get("grade_id") for c in nb.cells]
    assert None not in ids and len(ids) == len(set(ids)), "every cell needs a unique grade_id"
    assert ids[1:3] == ["colab_setup", "setup"]
    colab = nb.cells[1].source
    assert '"google.colab" in sys.modules' in colab and "torch" not in colab.split("install")[-1]
    assert f"colab.research.google.com/github/{REPO_URL}/blob/main/course/{lesson}/" \
           f"{lesson}.ipynb" in nb.cells[0].source
    checks = [c for c in nb.cells if is_check_cell(c)]
    assert all(nbgrader_meta(c).get("points", 0) > 0 for c in checks)
    assert all(".check(" in c.source for c in checks), "every check cell ends in exercise.check"
    # Check cells import their instructor material themselves (the release bakes them).
    later_imports = [nbgrader_meta(c)["grade_id"] for c in nb.cells[3:] if c.cell_type == "code"
                     and re.search(r"^(import|from) \w", c.source, flags=re.M)
                     and not is_answer_cell(c) and not is_check_cell(c)]
    assert not later_imports, f"imports belong in the setup cell: {later_imports}"


def test_start_here_links_every_lesson_on_colab_and_binder():
    text = REPO.source_notebook("00_start_here").read_text()
    for lesson in LESSONS:
        assert f"colab.research.google.com/github/{REPO_URL}/blob/main/course/{lesson}/" \
               f"{lesson}.ipynb" in text, f"00_start_here has no Colab link to {lesson}"
        assert f"mybinder.org/v2/gh/{REPO_URL}/main?urlpath=lab/tree/course/{lesson}/" \
               f"{lesson}.ipynb" in text, f"00_start_here has no Binder link to {lesson}"


def test_course_root_layout_matches_nbgrader_config():
    config = Course().nbgrader_config()
    assert config.CourseDirectory.source_directory == "solutions"
    assert config.CourseDirectory.release_directory == "course"
    assert config.CourseDirectory.submitted_directory.startswith("autograder")
