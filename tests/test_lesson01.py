"""Lesson 01 (activations): the notebook's structure, its checks, and its student copy.

Fast tests run the notebook's code cells in this process (experiments excluded): every check
passes with the instructor's solution, every classic mistake listed in a check is caught and
named from the public scenarios alone, and the solutions agree with torch on random inputs
beyond the scenarios. Slow tests execute the solved and the student notebook in a kernel.
"""

from __future__ import annotations

import copy
import re
import time
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlopt import objectives
from dlopt.check import CheckFailed, Exercise
from dlopt.oracles import torch_derivative, torch_function, torch_jvp

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "01_activations" / "01_activations.ipynb"
GRADED = [
    "numerical_gradient", "sigmoid", "sigmoid_grad", "tanh", "tanh_grad", "relu", "relu_grad",
    "leaky_relu", "leaky_relu_grad", "elu", "elu_grad", "gelu", "gelu_grad", "softmax",
    "softmax_jvp",
]
MISTAKE_PREFIX = "This matches a classic mistake: "


def _read():
    return nbformat.read(NOTEBOOK, as_version=4)


def _nbgrader(cell) -> dict:
    return cell.metadata["nbgrader"]


def _is_experiment(cell) -> bool:
    return "experiment" in cell.metadata.get("tags", [])


def _run_cells(nb) -> dict:
    """Execute the notebook's code cells, experiments excluded, in one namespace."""
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and not _is_experiment(cell):
            exec(compile(cell.source, f"<cell {_nbgrader(cell)['grade_id']}>", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def solved() -> dict:
    return _run_cells(_read())


@pytest.fixture(scope="module")
def exercises(solved) -> dict[str, Exercise]:
    return {obj.function: obj for obj in solved.values() if isinstance(obj, Exercise)}


def _public_only(exercise: Exercise) -> Exercise:
    public = copy.copy(exercise)
    public.hidden_cases = []
    return public


# --- structure ---------------------------------------------------------------------------------
def test_cells_carry_nbgrader_metadata_and_no_outputs():
    nb = _read()
    assert nb.metadata["kernelspec"]["name"] == "python3"
    ids = [_nbgrader(c)["grade_id"] for c in nb.cells]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    for cell in nb.cells:
        meta = _nbgrader(cell)
        assert meta["schema_version"] == 3 and meta["task"] is False
        assert meta["locked"] is (not meta["solution"])
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, meta["grade_id"]
        if meta["solution"]:
            begins = cell.source.count("### BEGIN SOLUTION")
            assert begins == cell.source.count("### END SOLUTION") >= 1
            assert not meta["grade"]
        if meta["grade"]:
            assert meta["points"] in (1, 2) and not _is_experiment(cell)
            assert "### BEGIN HIDDEN TESTS" in cell.source and ".check(" in cell.source
            assert cell.source.startswith('"""`'), "a test cell opens with what it checks"
            assert "np.random.default_rng(" in cell.source, "hidden scenarios are seeded"


def test_cell_order_and_setup():
    cells = _read().cells
    assert [_nbgrader(c)["grade_id"] for c in cells[:3]] == ["title", "colab_setup", "setup"]
    title = cells[0].source
    assert "colab.research.google.com/github/dlopt-course/deep-learning-optimization/blob/main/" \
           "course/01_activations/01_activations.ipynb" in title
    assert "mybinder.org/v2/gh/dlopt-course/deep-learning-optimization/main?urlpath=lab/tree/" \
           "course/01_activations/01_activations.ipynb" in title
    assert "rng = np.random.default_rng(0)" in cells[2].source
    assert cells[-1].cell_type == "markdown" and "Summary" in cells[-1].source
    for cell in cells[3:]:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*(import|from)\s+\w", cell.source, re.M), \
                f"import outside the setup cell: {_nbgrader(cell)['grade_id']}"


def test_each_graded_function_has_a_derivation_a_stub_and_a_check(exercises):
    cells = _read().cells
    assert sorted(exercises) == sorted(GRADED)
    for name in GRADED:
        stub = [i for i, c in enumerate(cells) if _nbgrader(c)["solution"]
                and re.search(rf"^def {name}\(", c.source, re.M)]
        assert len(stub) == 1, name
        before = "\n".join(c.source for c in cells[:stub[0]] if c.cell_type == "markdown")
        assert f"`{name}`" in before, f"no derivation introduces {name}"
        after = cells[stub[0] + 1]
        assert _nbgrader(after)["grade"] and f".check({name})" in after.source, name


def test_misconceptions_are_stated():
    text = "\n".join(c.source for c in _read().cells if c.cell_type == "markdown")
    assert "ReLU's gradient is 1" in text
    assert "np.exp(1000.0)" in text and "saturat" in text
    assert "approximate='tanh'" in text and "approximate='none'" in text


# --- the checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GRADED)
def test_solution_passes_every_scenario(solved, exercises, name):
    exercises[name].check(solved[name])  # raises CheckFailed on any failing scenario
    assert len(exercises[name].cases) + len(exercises[name].hidden_cases) >= 3
    assert len(exercises[name].hidden_cases) >= 2
    assert len(exercises[name].mistakes) >= 3


@pytest.mark.parametrize("name", GRADED)
def test_every_mistake_is_caught_and_named_from_public_scenarios(exercises, name):
    public = _public_only(exercises[name])
    for mistake in public.mistakes:
        # as in a notebook, where numpy's overflow warnings are printed, not raised
        with pytest.raises(CheckFailed) as failure, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            public.check(mistake.fn)
        assert MISTAKE_PREFIX + mistake.message in str(failure.value), (
            f"{name}: mistake not named: {mistake.message}\n{failure.value}")


@pytest.mark.parametrize("name", GRADED)
def test_unimplemented_function_is_reported_as_such(exercises, name):
    def stub(*args, **kwargs):
        raise NotImplementedError("replace this line with your code")

    with pytest.raises(NotImplementedError, match="is not implemented yet"):
        exercises[name].check(stub)


# --- the solutions beyond the scenarios --------------------------------------------------------
ELEMENTWISE = [
    ("sigmoid", torch.sigmoid, {}), ("tanh", torch.tanh, {}), ("relu", torch.relu, {}),
    ("leaky_relu", F.leaky_relu, {"negative_slope": 0.07}), ("elu", F.elu, {"alpha": 0.6}),
    ("gelu", F.gelu, {}),
]


@pytest.mark.parametrize("name,fn,kwargs", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_activations_agree_with_torch_on_random_inputs(solved, name, fn, kwargs, scale):
    rng = np.random.default_rng(int(scale))
    x = rng.normal(0, scale, size=(6, 5, 4))
    x[0, 0, :2] = 0.0  # the kink
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # not even a warning
        value = solved[name](x, **kwargs)
        slope = solved[name + "_grad"](x, **kwargs)
    np.testing.assert_allclose(value, torch_function(fn)(x, **kwargs), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(slope, torch_derivative(fn)(x, **kwargs), rtol=1e-7, atol=1e-12)
    assert x[0, 0, 0] == 0.0 and value.shape == slope.shape == x.shape


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_jvp_agree_with_torch(solved, axis):
    rng = np.random.default_rng(3)
    z = rng.normal(0, 200, size=(4, 5, 3))
    v = rng.normal(size=z.shape)

    def torch_softmax(t, axis=-1):
        return torch.softmax(t, dim=axis)

    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = solved["softmax"](z, axis=axis)
        jv = solved["softmax_jvp"](z, v, axis=axis)
    np.testing.assert_allclose(s, torch_function(torch_softmax)(z, axis=axis), atol=1e-15)
    np.testing.assert_allclose(jv, torch_jvp(torch_softmax)(z, v, axis=axis), atol=1e-12)


@pytest.mark.parametrize("f,shape", [(objectives.rosenbrock, (3,)), (objectives.himmelblau, (2,)),
                                     (objectives.wavy_bowl, (2, 3)),
                                     (objectives.sum_of_sines, (2, 2, 2))])
def test_numerical_gradient_agrees_with_analytic_gradients(solved, f, shape):
    x = np.random.default_rng(4).normal(size=shape)
    before = x.copy()
    grad = solved["numerical_gradient"](f, x)
    np.testing.assert_allclose(grad, objectives.analytic_gradient(f)(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(x, before)


# --- the student copy ----------------------------------------------------------------------------
def _student_copy():
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    nb, resources = ClearSolutions().preprocess(_read(), {})
    nb, _ = ClearHiddenTests().preprocess(nb, resources)
    return nb


def test_student_copy_has_no_solutions_or_hidden_tests():
    nb = _student_copy()
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "BEGIN SOLUTION" not in code and "HIDDEN TESTS" not in code
    assert "hidden_rng" not in code
    assert code.count("raise NotImplementedError") == len(GRADED)


def test_student_copy_checks_say_not_implemented():
    namespace: dict = {}
    raised = []
    for cell in _student_copy().cells:
        if cell.cell_type != "code" or _is_experiment(cell):
            continue
        try:
            exec(compile(cell.source, "<student cell>", "exec"), namespace)
        except NotImplementedError as exc:
            assert _nbgrader(cell)["grade"], "only check cells may stop"
            assert "is not implemented yet" in str(exc)
            raised.append(_nbgrader(cell)["grade_id"])
    graded = [_nbgrader(c)["grade_id"] for c in _read().cells if _nbgrader(c)["grade"]]
    assert raised == graded


# --- executing the notebooks -----------------------------------------------------------------
def _execute(nb, allow_errors=False):
    import nbclient

    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     allow_errors=allow_errors,
                                     resources={"metadata": {"path": str(ROOT)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


@pytest.mark.slow
def test_solved_notebook_runs_top_to_bottom_quickly():
    nb = _read()
    seconds = _execute(nb)
    assert seconds < 30, f"the solved notebook took {seconds:.1f} s"
    text = "\n".join(out.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for out in c.outputs)
    for name in GRADED:
        assert f"✓ {name}: all" in text
    assert "DISAGREES" not in text and "implement `" not in text
    for cell in nb.cells:
        if _nbgrader(cell)["grade_id"] in ("experiment_activation_explorer",
                                           "experiment_depth_explorer"):
            assert "image/png" in cell.outputs[0]["data"]


@pytest.mark.slow
def test_student_notebook_only_stops_at_unimplemented_functions():
    nb = _student_copy()
    _execute(nb, allow_errors=True)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        errors = [out for out in cell.outputs if out.output_type == "error"]
        if _nbgrader(cell)["grade"]:
            assert [e.ename for e in errors] == ["NotImplementedError"], _nbgrader(cell)["grade_id"]
        else:
            assert errors == [], (_nbgrader(cell)["grade_id"], errors)
        if _is_experiment(cell):
            shown = str(cell.outputs)
            assert "implement `" in shown, _nbgrader(cell)["grade_id"]
