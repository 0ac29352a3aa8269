"""The contract every graded lesson keeps: its structure, its checks and its student copy.

Parametrized over every lesson in solutions/ whose notebook has a graded check cell, and over
every exercise such a cell checks (by the variable it calls ``.check`` on). Fast tests run the
notebook's code cells in this process (experiments excluded): every check passes with the
instructor's solution, every classic mistake is caught and named from the public scenarios alone,
and the student copy stops at its check cells and nowhere else. Slow tests execute the solved and
the student notebook in a kernel. What one lesson alone does is tested in tests/test_lessonNN.py.

Where a lesson legitimately differs, the exception is listed below, by lesson, with its reason.
"""

from __future__ import annotations

import contextlib
import io
import re

import pytest
from lesson_harness import (
    MISTAKE_PREFIX,
    REPO_URL,
    ROOT,
    check_calls,
    check_cell_ids,
    executed_solution,
    executed_student_copy,
    exercises_by_variable,
    grade_id,
    graded_functions,
    graded_lessons,
    is_experiment,
    nbgrader,
    printed_text,
    public_failure,
    read,
    run_cells,
    run_student_copy,
    student_copy,
)

from autograder.assemble import is_check_cell
from dlopt.grading import Exercise

LESSONS = graded_lessons()
EXERCISES = [pytest.param(lesson, variable, id=f"{lesson}:{variable}")
             for lesson in LESSONS for variable, _ in check_calls(lesson)]

# --- the exceptions, by lesson -------------------------------------------------------------------
# 00 is the course's front page: it opens with an "intro" cell (not a lesson "title") and ends
# with the table of lessons, not a Summary.
FIRST_CELL = {"00_start_here": "intro"}
ENDS_WITHOUT_SUMMARY = {"00_start_here"}
# These derivations introduce two functions in one sentence ("You will implement `sigmoid` and
# `sigmoid_grad`"); elsewhere each function has its own "You will implement `name`".
INTRODUCED_TOGETHER = {"01_activations", "02_losses_backprop", "04_adaptive_optimizers",
                       "05_regularization", "08_pytorch_from_numpy"}
# Lesson 08 grades classes (torch.autograd.Function, nn.Module, optimizers): a class's stub has
# one solution block per method, 21 in all for 12 graded classes and functions.
SOLUTION_BLOCKS = {"08_pytorch_from_numpy": 21}
STUB_KEYWORDS = {"08_pytorch_from_numpy": "def|class"}
# Early stopping's hidden scenarios are validation curves written out (HIDDEN_CURVES), not drawn.
HIDDEN_WRITTEN_OUT = {("05_regularization", "test_early_stopping"): "HIDDEN_CURVES"}
# At least 3 public and 3 hidden scenarios per exercise, except where a lesson has fewer:
# (public, hidden), each the fewest one of its exercises has.
FEWEST_SCENARIOS = {
    "01_activations": (3, 2),  # tanh_grad, relu, leaky_relu, gelu, gelu_grad: 2 hidden
    "02_losses_backprop": (2, 2),  # the init std checks: 2 each; linear_forward: 2 hidden
    "04_adaptive_optimizers": (3, 2),  # exponential_lr: 2 hidden
    "05_regularization": (2, 3),  # choose_lambda_by_cv: 2 public
    "08_pytorch_from_numpy": (2, 3),  # ReLU and ForeachAdam: 2 public
}
# Student experiment cells that need not say "implement ... first", since they use no learner
# function: 00's demonstrations; 08's tensor tour and its GPU cells, which on a machine without a
# GPU only explain what they would measure; 09's measurements of torch's own kernels; 11's
# threads against processes.
EXPERIMENTS_WITHOUT_EXERCISES = {
    "00_start_here": {"timing_demo", "widget_check", "feedback_demo"},
    "08_pytorch_from_numpy": {"experiment_tensors", "experiment_gpu_matmul",
                              "experiment_gpu_training"},
    "09_performance": {"experiment_async_timeline", "experiment_compile", "experiment_precision",
                       "experiment_batch_size", "experiment_data_loading"},
    "11_distributed": {"experiment_threads"},
}


# --- structure -----------------------------------------------------------------------------------
@pytest.mark.parametrize("lesson", LESSONS)
def test_cells_carry_nbgrader_metadata_and_no_outputs(lesson):
    nb = read(lesson)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    ids = [grade_id(c) for c in nb.cells]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    for cell in nb.cells:
        meta = nbgrader(cell)
        assert meta["schema_version"] == 3 and meta["task"] is False
        assert meta["locked"] is (not meta["solution"])
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, meta["grade_id"]
        if meta["solution"]:
            begins = cell.source.count("### BEGIN SOLUTION")
            assert begins == cell.source.count("### END SOLUTION") >= 1
            assert not meta["grade"]
        if meta["grade"]:
            assert meta["points"] in (1, 2) and not is_experiment(cell)
            assert "### BEGIN HIDDEN TESTS" in cell.source and ".check(" in cell.source
            assert cell.source.startswith('"""`'), "a test cell opens with what it checks"
            hidden = cell.source.split("### BEGIN HIDDEN TESTS")[1]
            assert not re.search(r"np\.random\.(rand|randn|normal|uniform|seed)\(", cell.source)
            seeded = HIDDEN_WRITTEN_OUT.get((lesson, meta["grade_id"]), "np.random.default_rng(")
            assert seeded in hidden, f"{meta['grade_id']}: hidden scenarios are seeded"


@pytest.mark.parametrize("lesson", LESSONS)
def test_cell_order_and_setup(lesson):
    cells = read(lesson).cells
    first = FIRST_CELL.get(lesson, "title")
    assert [grade_id(c) for c in cells[:3]] == [first, "colab_setup", "setup"]
    title = cells[0].source
    assert (f"colab.research.google.com/github/{REPO_URL}/blob/main/"
            f"course/{lesson}/{lesson}.ipynb") in title
    assert (f"mybinder.org/v2/gh/{REPO_URL}/main?urlpath=lab/tree/"
            f"course/{lesson}/{lesson}.ipynb") in title
    assert "rng = np.random.default_rng(0)" in cells[2].source
    if lesson not in ENDS_WITHOUT_SUMMARY:
        assert cells[-1].cell_type == "markdown" and "Summary" in cells[-1].source
    for cell in cells[3:]:
        # Check cells import their instructor material themselves: the release replaces them
        # with baked data, so the shared setup cell never names what students do not install.
        if cell.cell_type == "code" and not is_check_cell(cell):
            assert not re.search(r"^\s*(import|from)\s+\w", cell.source, re.M), \
                f"import outside the setup cell: {grade_id(cell)}"


@pytest.mark.parametrize("lesson", LESSONS)
def test_setup_and_experiments_use_only_what_students_install(lesson):
    for cell in read(lesson).cells:
        if cell.cell_type == "code" and not is_check_cell(cell):
            assert "dlopt_instructor" not in cell.source, \
                f"{grade_id(cell)} imports instructor material, which students do not have"


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_graded_function_has_a_derivation_a_stub_and_a_check(lesson):
    cells = read(lesson).cells
    namespace = run_cells(lesson)
    for variable, function in check_calls(lesson):
        assert namespace[variable].function == function, variable
    defined = {id(o) for o in namespace.values() if isinstance(o, Exercise)}
    checked = {id(e) for e in exercises_by_variable(lesson).values()}
    assert defined == checked, "every Exercise is checked in a check cell"
    keywords = STUB_KEYWORDS.get(lesson, "def")
    for name in graded_functions(lesson):
        stub = [i for i, c in enumerate(cells) if nbgrader(c)["solution"]
                and re.search(rf"^({keywords}) {name}\(", c.source, re.M)]
        assert len(stub) == 1, name
        before = "\n".join(c.source for c in cells[:stub[0]] if c.cell_type == "markdown")
        if lesson in INTRODUCED_TOGETHER:
            assert re.search(rf"You will implement [`\w, ]*`{name}`", before), \
                f"no derivation introduces {name}"
        else:
            assert f"You will implement `{name}`" in before, f"no derivation introduces {name}"
        after = cells[stub[0] + 1]
        assert nbgrader(after)["grade"] and f".check({name})" in after.source, name


@pytest.mark.parametrize("lesson", LESSONS)
def test_dlopt_modules_hold_no_answer(lesson):
    """No graded function is defined in dlopt (experiments take the learner's functions)."""
    for path in (ROOT / "src" / "dlopt").glob("*.py"):
        text = path.read_text()
        for name in graded_functions(lesson):
            assert not re.search(rf"^(def|class) {name}\(", text, re.M), \
                f"{path.name} defines {name}"


# --- the checks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("lesson,variable", EXERCISES)
def test_solution_passes_every_scenario(lesson, variable):
    exercise = exercises_by_variable(lesson)[variable]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exercise.check(run_cells(lesson)[exercise.function])  # raises CheckFailed on a failure
    assert f"✓ {exercise.function}: all" in out.getvalue()
    public, hidden = FEWEST_SCENARIOS.get(lesson, (3, 3))
    assert len(exercise.cases) >= public and len(exercise.hidden_cases) >= hidden
    assert len(exercise.mistakes) >= 3


@pytest.mark.parametrize("lesson,variable", EXERCISES)
def test_every_mistake_is_caught_and_named_from_public_scenarios(lesson, variable):
    exercise = exercises_by_variable(lesson)[variable]
    for mistake in exercise.mistakes:
        message = public_failure(exercise, mistake.fn)
        assert MISTAKE_PREFIX + mistake.message in message, (
            f"{variable}: mistake not named: {mistake.message}\n{message}")


@pytest.mark.parametrize("lesson,variable", EXERCISES)
def test_unimplemented_function_is_reported_as_such(lesson, variable):
    """The learner's own stub, from the student copy (a class for lesson 08's classes)."""
    exercise = exercises_by_variable(lesson)[variable]
    stub = run_student_copy(lesson).namespace[exercise.function]
    with pytest.raises(NotImplementedError, match="is not implemented yet"):
        exercise.check(stub)


# --- the student copy ----------------------------------------------------------------------------
@pytest.mark.parametrize("lesson", LESSONS)
def test_student_copy_has_no_solutions_or_hidden_tests(lesson):
    code = "\n".join(c.source for c in student_copy(lesson).cells if c.cell_type == "code")
    assert "BEGIN SOLUTION" not in code and "HIDDEN TESTS" not in code
    assert "hidden_rng" not in code and "HIDDEN_CURVES" not in code
    blocks = sum(c.source.count("### BEGIN SOLUTION") for c in read(lesson).cells
                 if nbgrader(c)["solution"])
    assert blocks == SOLUTION_BLOCKS.get(lesson, len(graded_functions(lesson)))
    assert code.count("raise NotImplementedError") == blocks


@pytest.mark.parametrize("lesson", LESSONS)
def test_student_copy_checks_say_not_implemented(lesson):
    """Only check cells stop, each with "not implemented yet" (experiments excluded)."""
    assert run_student_copy(lesson).raised == check_cell_ids(lesson)


# --- executing the notebooks ---------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_solved_notebook_runs_top_to_bottom_and_passes_every_check(lesson):
    nb = executed_solution(lesson)
    text = printed_text(nb)
    for name in graded_functions(lesson):
        assert f"✓ {name}: all" in text, name
    assert "implement `" not in text


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_student_notebook_only_stops_at_unimplemented_functions(lesson):
    quiet = EXPERIMENTS_WITHOUT_EXERCISES.get(lesson, set())
    for cell in executed_student_copy(lesson).cells:
        if cell.cell_type != "code":
            continue
        errors = [out for out in cell.outputs if out.output_type == "error"]
        if nbgrader(cell)["grade"]:
            assert [e.ename for e in errors] == ["NotImplementedError"], grade_id(cell)
        else:
            assert errors == [], (grade_id(cell), errors)
        if is_experiment(cell) and grade_id(cell) not in quiet:
            assert "implement `" in str(cell.outputs), grade_id(cell)
