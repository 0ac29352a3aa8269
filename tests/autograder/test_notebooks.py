"""The lessons themselves: stored clean, released faithfully, and runnable within budget."""

from __future__ import annotations

import re
import time

import nbformat
import pytest
from conftest import LESSONS, REPO, answer_sources
from nbclient import NotebookClient

from autograder.assemble import EXPERIMENT_TAG, is_answer_cell, is_check_cell, nbgrader_meta
from autograder.course import Course
from autograder.release import release

BUDGET_SECONDS = 30
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


def test_course_equals_a_fresh_release(course_copy):
    release(course_copy)
    for lesson in LESSONS:
        fresh = course_copy.release_notebook(lesson).read_bytes()
        assert fresh == REPO.release_notebook(lesson).read_bytes(), (
            f"course/{lesson} is not what solutions/ generates: run "
            f"'python -m autograder release {lesson}' and commit the result")


def test_release_is_deterministic(course_copy):
    release(course_copy, ["00_start_here"])
    first = course_copy.release_notebook("00_start_here").read_bytes()
    release(course_copy, ["00_start_here"])
    assert course_copy.release_notebook("00_start_here").read_bytes() == first


@pytest.mark.parametrize("lesson", LESSONS)
def test_student_release_holds_no_solution_or_hidden_test(lesson):
    text = REPO.release_notebook(lesson).read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "add_hidden"):
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
    later_imports = [nbgrader_meta(c)["grade_id"] for c in nb.cells[3:] if c.cell_type == "code"
                     and re.search(r"^(import|from) \w", c.source, flags=re.M)
                     and not is_answer_cell(c)]
    assert not later_imports, f"imports belong in the setup cell: {later_imports}"


def test_start_here_links_every_lesson_on_colab_and_binder():
    text = REPO.source_notebook("00_start_here").read_text()
    for lesson in LESSONS:
        assert f"colab.research.google.com/github/{REPO_URL}/blob/main/course/{lesson}/" \
               f"{lesson}.ipynb" in text, f"00_start_here has no Colab link to {lesson}"
        assert f"mybinder.org/v2/gh/{REPO_URL}/main?urlpath=lab/tree/course/{lesson}/" \
               f"{lesson}.ipynb" in text, f"00_start_here has no Binder link to {lesson}"


def execute(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute(env={"MPLBACKEND": "Agg", "PATH": __import__("os").environ["PATH"]})
    return nb, time.perf_counter() - start


def errors(nb):
    return [(nbgrader_meta(c).get("grade_id"), o.ename, o.evalue) for c in nb.cells
            if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_solved_lesson_runs_clean_within_budget(lesson, tmp_path):
    nb, seconds = execute(REPO.source_notebook(lesson), tmp_path)
    assert not errors(nb), f"solutions/{lesson} raised: {errors(nb)}"
    assert seconds <= BUDGET_SECONDS, f"solutions/{lesson} took {seconds:.1f} s"


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_fresh_student_lesson_only_raises_not_implemented(lesson, tmp_path):
    nb, seconds = execute(REPO.release_notebook(lesson), tmp_path)
    found = errors(nb)
    assert found, "an untouched release should show NotImplementedError for its exercises"
    others = [e for e in found if e[1] != "NotImplementedError"]
    assert not others, f"course/{lesson} raised more than NotImplementedError: {others}"
    crashed = [gid for gid, *_ in found if any(
        nbgrader_meta(c).get("grade_id") == gid and EXPERIMENT_TAG in c.metadata.get("tags", [])
        for c in nb.cells)]
    assert not crashed, f"experiments must say 'implement ... first', not raise: {crashed}"
    assert seconds <= BUDGET_SECONDS


def test_course_root_layout_matches_nbgrader_config():
    config = Course().nbgrader_config()
    assert config.CourseDirectory.source_directory == "solutions"
    assert config.CourseDirectory.release_directory == "course"
    assert config.CourseDirectory.submitted_directory.startswith("autograder")
