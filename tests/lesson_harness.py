"""The harness the lesson tests share: read a lesson, run its cells here, build its student copy.

Every lesson's notebook follows one contract (tests/lessons/test_contract.py checks it for all
of them); the lesson files (tests/lessons/test_lNN_*.py) test what is particular to one lesson.
Both use these helpers, and so does tests/test_nbconvert.py. Runs are cached per lesson and
process, so all of them share one in-process run of the solved notebook and one kernel
execution of each of the solved notebook and the student copy.

A lesson is named by its folder in solutions/ ("01_activations").
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from dlopt.grading import CheckFailed, Exercise

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
MISTAKE_PREFIX = "This matches a classic mistake: "
REPO_URL = "dlopt-course/deep-learning-optimization"


# --- reading a lesson ----------------------------------------------------------------------------
def notebook_path(lesson: str) -> Path:
    return SOLUTIONS / lesson / f"{lesson}.ipynb"


def read(lesson: str) -> nbformat.NotebookNode:
    """The solved notebook, freshly read (callers may change it)."""
    return nbformat.read(notebook_path(lesson), as_version=4)


def nbgrader(cell) -> dict:
    return cell.metadata["nbgrader"]


def grade_id(cell) -> str:
    return nbgrader(cell)["grade_id"]


def is_experiment(cell) -> bool:
    return "experiment" in cell.metadata.get("tags", [])


def markdown(lesson: str) -> str:
    """All the lesson's prose, one string."""
    return "\n".join(c.source for c in read(lesson).cells if c.cell_type == "markdown")


def cell_sources(lesson: str) -> dict[str, str]:
    """Every cell's source by grade_id."""
    return {grade_id(c): c.source for c in read(lesson).cells}


def check_calls(lesson: str) -> list[tuple[str, str]]:
    """(exercise variable, function) of every ``variable.check(function)`` in a check cell."""
    return [call for c in read(lesson).cells if nbgrader(c)["grade"]
            for call in re.findall(r"(\w+)\.check\((\w+)\)", c.source)]


def check_cell_ids(lesson: str) -> list[str]:
    return [grade_id(c) for c in read(lesson).cells if nbgrader(c)["grade"]]


def graded_functions(lesson: str) -> list[str]:
    """The functions (or classes) the lesson's check cells check, in notebook order."""
    return list(dict.fromkeys(function for _, function in check_calls(lesson)))


def graded_functions_test(lesson: str, expected: list[str]):
    """A test that the lesson's check cells check exactly ``expected``, in this order."""

    def test_graded_functions_are_the_expected_ones():
        assert graded_functions(lesson) == expected

    return test_graded_functions_are_the_expected_ones


def graded_lessons() -> list[str]:
    """Every lesson in solutions/ whose notebook has a graded check cell."""
    return sorted(p.parent.name for p in SOLUTIONS.glob("*/*.ipynb")
                  if p.stem == p.parent.name and check_calls(p.stem))


# --- running the solved notebook in this process -------------------------------------------------
@functools.cache
def run_cells(lesson: str) -> dict:
    """The namespace of the notebook's code cells, experiments excluded, run here in order.

    Cached: the contract and the lesson's own tests share one run (treat it as read-only).
    """
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in read(lesson).cells:
            if cell.cell_type == "code" and not is_experiment(cell):
                exec(compile(cell.source, f"<cell {grade_id(cell)}>", "exec"), namespace)
    return namespace


def exercises_by_variable(lesson: str) -> dict[str, Exercise]:
    """The lesson's exercises by the variable a check cell calls ``.check`` on, in order."""
    namespace = run_cells(lesson)
    return {variable: namespace[variable] for variable, _ in check_calls(lesson)}


def exercises_by_function(lesson: str) -> dict[str, Exercise]:
    """The lesson's Exercise objects by the function they check (one exercise per function)."""
    found = list(exercises_by_variable(lesson).values())
    by_function = {e.function: e for e in found}
    assert len(by_function) == len(found), f"{lesson}: a function has several exercises"
    return by_function


@pytest.fixture(scope="module")
def solved(request) -> dict:
    """The solved notebook's namespace for the requesting module's ``LESSON``."""
    return run_cells(request.module.LESSON)


@pytest.fixture(scope="module")
def exercises(request) -> dict[str, Exercise]:
    """The requesting module's exercises by the function they check."""
    return exercises_by_function(request.module.LESSON)


# --- checking ------------------------------------------------------------------------------------
def public_only(exercise: Exercise) -> Exercise:
    """The exercise with its public scenarios alone, as a learner's notebook shows it."""
    public = copy.copy(exercise)
    public.hidden_cases = []
    return public


def check_quietly(exercise: Exercise, fn) -> None:
    """``exercise.check(fn)`` as in a notebook, where numpy's warnings are printed, not raised."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exercise.check(fn)


def failure(exercise: Exercise, fn, *, quiet: bool = True) -> str:
    """The message of the CheckFailed that ``fn`` gets (the check must fail).

    ``quiet``: numpy's warnings are ignored, as a notebook prints them; else they raise.
    """
    with pytest.raises(CheckFailed) as failed:
        if quiet:
            check_quietly(exercise, fn)
        else:
            exercise.check(fn)
    return str(failed.value)


def public_failure(exercise: Exercise, fn, *, quiet: bool = True) -> str:
    """The message ``fn`` gets from the public scenarios alone (the check must fail)."""
    return failure(public_only(exercise), fn, quiet=quiet)


# --- the student copy ----------------------------------------------------------------------------
def student_copy(lesson: str) -> nbformat.NotebookNode:
    """The student's notebook as released in course/: stubs, and checks baked as data.

    tests/autograder/test_notebooks.py keeps course/ equal to a fresh release of solutions/.
    """
    return nbformat.read(ROOT / "course" / lesson / f"{lesson}.ipynb", as_version=4)


@dataclass
class StudentRun:
    """What running the student copy's code cells here gave."""

    namespace: dict = field(default_factory=dict)
    raised: list[str] = field(default_factory=list)  # cells stopped by NotImplementedError
    printed: dict[str, str] = field(default_factory=dict)  # stdout by grade_id
    values: dict[str, object] = field(default_factory=dict)  # a cell's last expression


@functools.cache
def run_student_copy(lesson: str, *, experiments: bool = False,
                     quiet_warnings: bool = False) -> StudentRun:
    """Run the student copy's code cells here in one namespace, as a kernel would.

    A cell may stop with NotImplementedError (recorded in ``raised``, with its check); any other
    exception fails the test. A cell ending in an expression has its value in ``values``, as a
    notebook's ``Out``. Experiments run only if asked (with matplotlib's Agg backend).
    ``quiet_warnings``: warnings are ignored, as a notebook prints them instead of raising.
    Cached (treat as read-only): its namespace holds the learner's stubs, to check them with.
    """
    if experiments:
        import matplotlib

        matplotlib.use("Agg")
    run = StudentRun()
    for cell in student_copy(lesson).cells:
        if cell.cell_type != "code" or (is_experiment(cell) and not experiments):
            continue
        gid = grade_id(cell)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), warnings.catch_warnings():
                if quiet_warnings:
                    warnings.simplefilter("ignore")
                run.values[gid] = _run_like_a_kernel(cell.source, gid, run.namespace)
        except NotImplementedError as exc:
            assert nbgrader(cell)["grade"], f"only check cells may stop: {gid}"
            assert "is not implemented yet" in str(exc), (gid, str(exc))
            run.raised.append(gid)
        run.printed[gid] = out.getvalue()
    return run


def _run_like_a_kernel(source: str, name: str, namespace: dict):
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, f"<student cell {name}>", "exec"), namespace)
    if last is not None:
        return eval(compile(ast.Expression(last.value), f"<student cell {name}>", "eval"),
                    namespace)
    return None


# --- executing a notebook in a kernel ------------------------------------------------------------
def execute(nb, allow_errors: bool = False) -> None:
    """Execute ``nb`` in place in a fresh python3 kernel.

    Not timed: the 30 s budget per notebook is measured by benchmarks/notebook_runtimes.py,
    since a shared test machine's speed varies too much for a timed test.
    """
    import tempfile

    import nbclient

    # An empty working folder, as on Colab: a lesson must not read files next to it.
    with tempfile.TemporaryDirectory(prefix="lesson-run-") as folder:
        client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                         allow_errors=allow_errors,
                                         resources={"metadata": {"path": folder}})
        client.execute()


@functools.cache
def executed_solution(lesson: str) -> nbformat.NotebookNode:
    """The solved notebook executed in a kernel (cached: treat as read-only)."""
    nb = read(lesson)
    execute(nb)
    return nb


@functools.cache
def executed_student_copy(lesson: str) -> nbformat.NotebookNode:
    """The student copy executed in a kernel, errors kept in the outputs (cached)."""
    nb = student_copy(lesson)
    execute(nb, allow_errors=True)
    return nb


def printed_text(nb) -> str:
    """Everything the code cells printed."""
    return "\n".join(out.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for out in c.outputs)


def assert_draws_a_figure(nb, *grade_ids: str) -> None:
    """Each named cell's first output is a figure."""
    cells = {grade_id(c): c for c in nb.cells}
    for gid in grade_ids:
        assert "image/png" in cells[gid].outputs[0]["data"], gid
