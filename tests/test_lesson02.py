"""Lesson 02 (losses, backprop, initialization): the notebook's structure, checks and student copy.

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

from dlopt import mlp_lab
from dlopt.backprop_oracles import (
    torch_linear_backward,
    torch_linear_forward,
    torch_loss,
    torch_loss_grad,
    torch_mlp_loss_and_grads,
)
from dlopt.check import CheckFailed, Exercise
from dlopt.data import load_digits_split

ROOT = Path(__file__).resolve().parents[1]
LESSON = "02_losses_backprop"
NOTEBOOK = ROOT / "solutions" / LESSON / f"{LESSON}.ipynb"
GRADED = [
    "mse_loss", "mse_loss_grad", "bce_with_logits", "cross_entropy", "cross_entropy_grad",
    "linear_forward", "linear_backward", "mlp_loss_and_grads", "xavier_normal", "he_normal",
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


def _label(exercise: Exercise) -> str:
    driver = "" if exercise.driver is None else f" via {exercise.driver.__name__}"
    return exercise.function + driver


@pytest.fixture(scope="module")
def solved() -> dict:
    return _run_cells(_read())


@pytest.fixture(scope="module")
def exercises(solved) -> dict[str, Exercise]:
    return {_label(obj): obj for obj in solved.values() if isinstance(obj, Exercise)}


EXERCISES = [
    "mse_loss", "mse_loss_grad", "bce_with_logits", "cross_entropy", "cross_entropy_grad",
    "linear_forward", "linear_backward", "mlp_loss_and_grads",
    "xavier_normal via draw_with_seed", "xavier_normal via sample_std",
    "he_normal via draw_with_seed", "he_normal via sample_std",
]


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
    assert ("colab.research.google.com/github/dlopt-course/deep-learning-optimization/blob/main/"
            f"course/{LESSON}/{LESSON}.ipynb") in title
    assert ("mybinder.org/v2/gh/dlopt-course/deep-learning-optimization/main?urlpath=lab/tree/"
            f"course/{LESSON}/{LESSON}.ipynb") in title
    assert "rng = np.random.default_rng(0)" in cells[2].source
    assert cells[-1].cell_type == "markdown" and "Summary" in cells[-1].source
    for cell in cells[3:]:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*(import|from)\s+\w", cell.source, re.M), \
                f"import outside the setup cell: {_nbgrader(cell)['grade_id']}"


def test_each_graded_function_has_a_derivation_a_stub_and_a_check(exercises):
    cells = _read().cells
    assert sorted(exercises) == sorted(EXERCISES)
    assert sorted({e.function for e in exercises.values()}) == sorted(GRADED)
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
    for phrase in ("Double softmax", "One-hot targets where class indices are expected",
                   "from_logits", "np.exp(1000.0)", "Mean in the loss, sum in the gradient",
                   "the gradient of ReLU is not \"1\"", "not a standard deviation"):
        assert phrase in text, phrase


# --- the checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("label", EXERCISES)
def test_solution_passes_every_scenario(solved, exercises, label):
    exercise = exercises[label]
    exercise.check(solved[exercise.function])  # raises CheckFailed on any failing scenario
    assert len(exercise.cases) >= 2 and len(exercise.hidden_cases) >= 2
    assert len(exercise.mistakes) >= 3


@pytest.mark.parametrize("label", EXERCISES)
def test_every_mistake_is_caught_and_named_from_public_scenarios(exercises, label):
    public = _public_only(exercises[label])
    for mistake in public.mistakes:
        # as in a notebook, where numpy's overflow warnings are printed, not raised
        with pytest.raises(CheckFailed) as failure, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                public.check(mistake.fn)
        assert MISTAKE_PREFIX + mistake.message in str(failure.value), (
            f"{label}: mistake not named: {mistake.message}\n{failure.value}")


@pytest.mark.parametrize("label", EXERCISES)
def test_unimplemented_function_is_reported_as_such(exercises, label):
    def stub(*args, **kwargs):
        raise NotImplementedError("replace this line with your code")

    with pytest.raises(NotImplementedError, match="is not implemented yet"):
        exercises[label].check(stub)


def test_a_shape_error_is_not_named_as_a_shape_sensitive_mistake(exercises):
    def no_keepdims(z, y):  # (N, C) - (N,) fails for N != C: a bug, not the one-hot formula
        shifted = z - z.max(axis=1)
        lse = np.log(np.sum(np.exp(shifted), axis=1))
        return float(np.mean(lse - shifted[np.arange(len(y)), y]))

    with pytest.raises(CheckFailed) as failure:
        _public_only(exercises["cross_entropy"]).check(no_keepdims)
    assert "broadcast" in str(failure.value) and MISTAKE_PREFIX not in str(failure.value)


def test_points_add_up():
    points = {_nbgrader(c)["grade_id"]: _nbgrader(c)["points"] for c in _read().cells
              if _nbgrader(c)["grade"]}
    assert sum(points.values()) == 14, points


# --- the solutions beyond the scenarios --------------------------------------------------------
def _quiet(fn, *args):
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # not even a warning
        return fn(*args)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_losses_and_gradients_agree_with_torch_on_random_inputs(solved, scale):
    rng = np.random.default_rng(int(scale))
    pred, target = rng.normal(0, scale, size=(6, 4)), rng.normal(size=(6, 4))
    np.testing.assert_allclose(_quiet(solved["mse_loss"], pred, target),
                               torch_loss(F.mse_loss)(pred, target), rtol=1e-12)
    np.testing.assert_allclose(_quiet(solved["mse_loss_grad"], pred, target),
                               torch_loss_grad(F.mse_loss)(pred, target), rtol=1e-12)
    labels = rng.integers(0, 2, size=(6, 4)).astype(float)
    np.testing.assert_allclose(_quiet(solved["bce_with_logits"], pred, labels),
                               torch_loss(F.binary_cross_entropy_with_logits)(pred, labels),
                               rtol=1e-10)
    logits, y = rng.normal(0, scale, size=(9, 7)), rng.integers(0, 7, size=9)
    loss = _quiet(solved["cross_entropy"], logits, y)
    assert type(loss) is float
    np.testing.assert_allclose(loss, torch_loss(F.cross_entropy)(logits, y), rtol=1e-10)
    np.testing.assert_allclose(_quiet(solved["cross_entropy_grad"], logits, y),
                               torch_loss_grad(F.cross_entropy)(logits, y), atol=1e-15)


def test_cross_entropy_grad_does_not_change_its_input(solved):
    logits = np.array([[1.0, 2.0], [3.0, -1.0]])
    before = logits.copy()
    solved["cross_entropy_grad"](logits, np.array([0, 1]))
    np.testing.assert_array_equal(logits, before)


def test_linear_layer_agrees_with_torch(solved):
    rng = np.random.default_rng(5)
    x, W, b, dout = (rng.normal(size=s) for s in ((7, 5), (5, 3), (3,), (7, 3)))
    out, cache = solved["linear_forward"](x, W, b)
    expected_out, expected_cache = torch_linear_forward(x, W, b)
    np.testing.assert_allclose(out, expected_out, rtol=1e-12)
    for got, want in zip(cache, expected_cache, strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(solved["linear_backward"](dout, cache),
                         torch_linear_backward(dout, cache), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mlp_agrees_with_torch_on_random_networks(solved, seed):
    rng = np.random.default_rng(seed)
    D, H, C, N = 6, 9, 4, 11
    params = {"W1": rng.normal(size=(D, H)), "b1": rng.normal(size=H),
              "W2": rng.normal(size=(H, C)), "b2": rng.normal(size=C)}
    X, y = rng.normal(size=(N, D)), rng.integers(0, C, size=N)
    before = copy.deepcopy(params)
    loss, grads = solved["mlp_loss_and_grads"](params, X, y)
    expected_loss, expected = torch_mlp_loss_and_grads(params, X, y)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    assert grads.keys() == expected.keys()
    for k in expected:
        np.testing.assert_allclose(grads[k], expected[k], rtol=1e-10, atol=1e-14)
        np.testing.assert_array_equal(params[k], before[k])


@pytest.mark.parametrize("name,init,kwargs",
                         [("xavier_normal", torch.nn.init.xavier_normal_, {}),
                          ("he_normal", torch.nn.init.kaiming_normal_, {"nonlinearity": "relu"})])
@pytest.mark.parametrize("fan_in,fan_out", [(600, 300), (200, 900)])
def test_init_std_matches_torch_nn_init_statistically(solved, name, init, kwargs, fan_in,
                                                      fan_out):
    W = solved[name](fan_in, fan_out, np.random.default_rng(0))
    assert W.shape == (fan_in, fan_out)
    weight = torch.empty(fan_out, fan_in, dtype=torch.float64)
    init(weight, generator=torch.Generator().manual_seed(0), **kwargs)
    np.testing.assert_allclose(W.std(), weight.std().item(), rtol=0.01)
    assert abs(W.mean()) < 3 * W.std() / np.sqrt(W.size)


def test_training_reaches_95_percent_test_accuracy(solved):
    history = mlp_lab.train_mlp(solved["mlp_loss_and_grads"], load_digits_split(seed=0))
    assert history.test_accuracy[-1] >= 0.95
    assert history.train_loss[-1] < 0.1 * history.train_loss[0]


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
    assert "implement `" not in text
    assert text.count("agrees") == 2 and text.count("DISAGREES") == 2
    accuracy = float(re.search(r"test accuracy after \d+ epochs: ([\d.]+)%", text).group(1))
    assert accuracy >= 95.0
    explorer = next(c for c in nb.cells if _nbgrader(c)["grade_id"] == "experiment_init_explorer")
    assert "image/png" in explorer.outputs[0]["data"]


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
