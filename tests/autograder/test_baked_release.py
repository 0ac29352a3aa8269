"""The student release carries check data, not check code (autograder.release's baking).

Every check cell of course/ is its instructor cell's docstring, one import and one
``check("name", name, "<data>")`` call per exercise; the data holds the public scenarios alone.
Static tests read course/ and solutions/; the others compare with the instructor's export
(cached by content in pytest's cache folder, so one session runs each notebook once) or run
course/'s cells here, as a learner's kernel would.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import tokenize
import warnings

import nbformat
import pytest
from conftest import LESSONS, REPO, answer_sources
from nbgrader.utils import compute_checksum

from autograder.assemble import EXPERIMENT_TAG, is_answer_cell, is_check_cell, nbgrader_meta
from autograder.reference import cached_reference
from autograder.release import BAKED_IMPORT, baked_calls, opening_docstring
from dlopt.grading import CheckFailed, Exercise, check
from dlopt.grading.baked import unpack

MISTAKE_PREFIX = "This matches a classic mistake: "
#: Lessons whose visible checks run here: solutions pass, stubs stop, every mistake is named.
RUN_HERE = ["04_adaptive_optimizers", "08_pytorch_from_numpy"]


def read(path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def check_cells(path) -> dict[str, nbformat.NotebookNode]:
    return {nbgrader_meta(c)["grade_id"]: c for c in read(path).cells if is_check_cell(c)}


def code_tokens(source: str) -> list[str]:
    """The cell's tokens other than strings and comments (what would run as code)."""
    skip = {tokenize.STRING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE}
    return [tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type not in skip]


# --- static: what course/'s check cells hold ------------------------------------------------
@pytest.mark.parametrize("lesson", LESSONS)
def test_check_cells_hold_no_def_or_lambda(lesson):
    for grade_id, cell in check_cells(REPO.release_notebook(lesson)).items():
        code = " ".join(code_tokens(cell.source))
        assert not re.search(r"\bdef\b|\blambda\b|\bclass\b", code), grade_id
        nodes = {type(n).__name__ for n in ast.walk(ast.parse(cell.source))}
        assert not nodes & {"FunctionDef", "Lambda", "ClassDef", "AsyncFunctionDef"}, grade_id
        # the same, as plain text (grep): no word "def" or "lambda" after the docstring (a
        # name such as choose_lambda_by_cv is not the keyword)
        body = cell.source.removeprefix(opening_docstring(cell.source))
        assert not re.search(r"\bdef |\blambda\b", body), grade_id


@pytest.mark.parametrize("lesson", LESSONS)
def test_check_cells_are_a_docstring_an_import_and_one_call_per_exercise(lesson):
    released = check_cells(REPO.release_notebook(lesson))
    source = check_cells(REPO.source_notebook(lesson))
    assert list(released) == list(source)
    for grade_id, cell in released.items():
        instructor = source[grade_id].source
        docstring = opening_docstring(instructor)
        assert docstring and instructor.startswith(docstring)
        checked = re.findall(r"^\w+\.check\((\w+)\)\s*$", instructor, re.M)
        calls = baked_calls(cell.source)
        assert [name for name, _ in calls] == checked, grade_id
        lines = [docstring, BAKED_IMPORT] + [
            f'check("{name}", {name}, "{data}")' for name, data in calls]
        assert cell.source == "\n".join(lines), grade_id
        for name, data in calls:
            assert unpack(data).function == name


@pytest.mark.parametrize("lesson", LESSONS)
def test_check_cells_keep_grade_id_points_lock_and_a_valid_checksum(lesson):
    released = check_cells(REPO.release_notebook(lesson))
    source = check_cells(REPO.source_notebook(lesson))
    for grade_id, cell in released.items():
        ours, theirs = nbgrader_meta(cell), nbgrader_meta(source[grade_id])
        for key in ("grade_id", "points", "locked", "grade", "solution", "schema_version"):
            assert ours[key] == theirs[key], (grade_id, key)
        assert ours["checksum"] == compute_checksum(cell), f"{grade_id}: stale checksum"


@pytest.mark.parametrize("lesson", LESSONS)
def test_the_release_names_no_instructor_material(lesson):
    text = REPO.release_notebook(lesson).read_text(encoding="utf-8")
    for word in ("dlopt_instructor", "Exercise(", "Mistake(", "add_hidden", "reference="):
        assert word not in text, f"course/{lesson} still holds '{word}'"


# --- against the instructor's export --------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_only_public_scenarios_are_baked(lesson, reference_cache):
    exports = cached_reference(REPO, lesson, reference_cache).exports()
    released = check_cells(REPO.release_notebook(lesson))
    assert list(released) == list(exports)
    for grade_id, cell in released.items():
        calls = baked_calls(cell.source)
        assert len(calls) == len(exports[grade_id]), grade_id
        for (name, data), exported in zip(calls, exports[grade_id], strict=True):
            baked = unpack(data)
            assert all(not case.hidden for case in baked.cases), f"{grade_id}: hidden case"
            public = [c["label"] for c in exported["cases"] if not c["hidden"]]
            hidden = [c["label"] for c in exported["cases"] if c["hidden"]]
            assert hidden, f"{grade_id}: the export should have hidden scenarios"
            assert [case.label for case in baked.cases] == public, grade_id
            assert baked.function == exported["function"] == name
            assert baked.mistakes == exported["mistakes"]
            assert (baked.rtol, baked.atol) == (exported["rtol"], exported["atol"])
            assert all(len(c.mistake_outputs) == len(baked.mistakes) for c in baked.cases)


# --- course/'s cells, run here as a learner's kernel would ----------------------------------
def runnable(cell) -> bool:
    return cell.cell_type == "code" and EXPERIMENT_TAG not in cell.metadata.get("tags", [])


def run_cell(source: str, name: str, namespace: dict) -> tuple[str, BaseException | None]:
    """Run one cell's code; return what it printed and what it raised (checks raise)."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a notebook prints warnings, never raises them
            exec(compile(source, f"<cell {name}>", "exec"), namespace)
    except (CheckFailed, NotImplementedError) as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def run_release(lesson: str, answers: dict[str, str] | None = None) -> dict[str, tuple]:
    """Run course/'s code cells (experiments excluded), with ``answers`` in the answer cells."""
    namespace: dict = {}
    results = {}
    for cell in read(REPO.release_notebook(lesson)).cells:
        if not runnable(cell):
            continue
        grade_id = nbgrader_meta(cell)["grade_id"]
        source = cell.source
        if answers is not None and is_answer_cell(cell):
            source = answers[grade_id]
        results[grade_id] = run_cell(source, grade_id, namespace)
    return results


def instructor_exercises(lesson: str) -> dict[str, list[Exercise]]:
    """Each check cell's Exercise objects, in the order it checks them (from solutions/)."""
    namespace: dict = {}
    found = {}
    for cell in read(REPO.source_notebook(lesson)).cells:
        if not runnable(cell):
            continue
        grade_id = nbgrader_meta(cell)["grade_id"]
        printed, raised = run_cell(cell.source, grade_id, namespace)
        assert raised is None, (grade_id, raised)
        if is_check_cell(cell):
            found[grade_id] = [namespace[variable] for variable in
                               re.findall(r"^(\w+)\.check\(\w+\)\s*$", cell.source, re.M)]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("lesson", RUN_HERE)
def test_untouched_release_stops_at_every_check_with_not_implemented(lesson):
    results = run_release(lesson)
    checks = list(check_cells(REPO.release_notebook(lesson)))
    stopped = [gid for gid, (_, raised) in results.items() if raised is not None]
    assert stopped == checks
    for gid in checks:
        raised = results[gid][1]
        assert isinstance(raised, NotImplementedError), (gid, raised)
        assert "is not implemented yet" in str(raised), gid


@pytest.mark.slow
@pytest.mark.parametrize("lesson", RUN_HERE)
def test_visible_checks_pass_the_solution_and_name_every_mistake(lesson):
    results = run_release(lesson, answer_sources(lesson))
    released = check_cells(REPO.release_notebook(lesson))
    for grade_id in released:
        printed, raised = results[grade_id]
        assert raised is None, (grade_id, str(raised))
        assert printed.count("✓ ") == len(baked_calls(released[grade_id].source)), printed
    for grade_id, exercises in instructor_exercises(lesson).items():
        calls = baked_calls(released[grade_id].source)
        for (name, data), exercise in zip(calls, exercises, strict=True):
            assert exercise.function == name
            for mistake in exercise.mistakes:
                printed, raised = run_cell("check(name, fn, data)", grade_id, {
                    "check": check, "name": name, "fn": mistake.fn, "data": data})
                assert isinstance(raised, CheckFailed), (name, mistake.message, printed)
                assert MISTAKE_PREFIX + mistake.message in str(raised), (
                    f"{name}: the visible check does not name: {mistake.message}\n{raised}")
