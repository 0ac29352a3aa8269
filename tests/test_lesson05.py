"""Lesson 05 (regularization): the notebook's structure, its checks, and its student copy.

Fast tests run the notebook's code cells in this process (experiments excluded): every check
passes with the instructor's solution, every classic mistake listed in a check is caught and
named from the public scenarios alone, and the solutions agree with torch and scikit-learn
beyond the scenarios. The early-stopping answers, worked out by hand in the check cell, are
confirmed here by brute force from the definition. Slow tests execute the solved and the
student notebook in a kernel.
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
from sklearn.linear_model import Lasso
from sklearn.model_selection import KFold

from dlopt.check import CheckFailed, Exercise
from dlopt.oracles import torch_update_rule
from dlopt.ridge import ridge_fit

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "05_regularization" / "05_regularization.ipynb"
GRADED = [
    "l2_penalty", "l2_grad", "sgd_l2_step", "l1_subgradient", "soft_threshold",
    "proximal_l1_step", "early_stopping", "kfold_indices", "choose_lambda_by_cv",
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


# --- structure -----------------------------------------------------------------------------------
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
            hidden = cell.source.split("### BEGIN HIDDEN TESTS")[1]
            assert not re.search(r"np\.random\.(rand|randn|normal|uniform|seed)\(", cell.source)
            assert "np.random.default_rng(" in hidden or "HIDDEN_CURVES" in hidden, \
                "hidden scenarios are seeded (or written out)"


def test_cell_order_and_setup():
    cells = _read().cells
    assert [_nbgrader(c)["grade_id"] for c in cells[:3]] == ["title", "colab_setup", "setup"]
    title = cells[0].source
    assert "colab.research.google.com/github/dlopt-course/deep-learning-optimization/blob/main/" \
           "course/05_regularization/05_regularization.ipynb" in title
    assert "mybinder.org/v2/gh/dlopt-course/deep-learning-optimization/main?urlpath=lab/tree/" \
           "course/05_regularization/05_regularization.ipynb" in title
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


def test_misconceptions_and_conventions_are_stated():
    text = "\n".join(c.source for c in _read().cells if c.cell_type == "markdown")
    assert 'Misconception: "L2 sets weights to zero like L1."' in text
    assert 'Misconception: "regularization is applied after the update."' in text
    assert "decoupled weight decay" in text.lower()
    assert "The convention of this course" in text
    assert r"\lambda\lVert w\rVert^2$ is a mistake" in text
    assert "KFold(n_splits=k)" in text and "shuffle=False" in text
    assert "restored" in text and "patience" in text


def test_dlopt_modules_hold_no_answer():
    """No lesson-05 function is defined in dlopt (experiments take the learner's functions)."""
    src = ROOT / "src" / "dlopt"
    for path in src.glob("*.py"):
        text = path.read_text()
        for name in GRADED:
            assert not re.search(rf"^def {name}\(", text, re.M), f"{path.name} defines {name}"


# --- the checks ----------------------------------------------------------------------------------
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


# --- early stopping: the hand-worked answers, confirmed by brute force ---------------------------
def _stopping(losses, patience, *, wait=None, ties=False, reset=True, future=False,
              last=False, offset=0):
    """Early stopping from its definition, and the classic wrong variants (keyword switches)."""
    wait = patience if wait is None else wait
    best, bad, stop = 0, 0, len(losses) - 1
    for e in range(len(losses)):
        earlier = losses[:e]
        improves = e == 0 or (losses[e] <= min(earlier) if ties else losses[e] < min(earlier))
        if improves:
            best = e
            bad = 0 if reset else bad
            continue
        bad += 1
        if (bad if not reset else e - best) >= wait:
            stop = e
            break
    if future:
        best = int(np.argmin(losses))
    if last:
        best = stop
    return best + offset, stop + offset


VARIANTS = [  # the columns of BY_HAND in the check cell
    {}, {"last": True}, {"wait_delta": 1}, {"wait_delta": -1}, {"future": True}, {"ties": True},
    {"reset": False}, {"offset": 1},
]


def _variant(losses, patience, column):
    options = dict(VARIANTS[column])
    delta = options.pop("wait_delta", 0)
    return _stopping(list(losses), patience, wait=patience + delta, **options)


def test_hand_worked_early_stopping_answers_match_the_definition(solved):
    table = solved["BY_HAND"]
    for label, (losses, patience) in solved["ES_CURVES"].items():
        for column, answer in enumerate(table[label]):
            if answer is not None:
                assert _variant(losses, patience, column) == answer, (label, column)


@pytest.mark.parametrize("seed", range(5))
def test_early_stopping_agrees_with_the_definition_on_random_curves(solved, seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(1, 40))
        losses = np.round(np.cumsum(rng.normal(0, 1, size=n)), 1)  # rounding makes ties
        patience = int(rng.integers(1, 6))
        best, stop = solved["early_stopping"](losses, patience)
        assert (int(best), int(stop)) == _stopping(list(losses), patience)


# --- the solutions beyond the scenarios ----------------------------------------------------------
def test_l2_gradient_is_what_torch_weight_decay_adds(solved):
    w = np.random.default_rng(0).normal(size=(3, 4))
    lam = 0.37
    w_next, _ = torch_update_rule("SGD")(w, np.zeros_like(w), {}, lr=1.0, weight_decay=lam)
    np.testing.assert_allclose(solved["l2_grad"](w, lam), w - w_next, rtol=1e-12)
    t = torch.tensor(w)
    assert solved["l2_penalty"](w, lam) == pytest.approx(lam / 2 * float((t**2).sum()), rel=1e-12)


def test_sgd_l2_step_equals_torch_sgd_with_weight_decay_for_random_steps(solved):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(5, 2))
    for _ in range(20):
        dw = rng.normal(size=w.shape)
        lr, lam = rng.uniform(0.01, 0.5), rng.uniform(0, 2)
        ours, state = solved["sgd_l2_step"](w, dw, {}, lr=lr, lam=lam)
        theirs, _ = torch_update_rule("SGD")(w, dw, {}, lr=lr, weight_decay=lam)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
        assert state == {}
        w = ours


@pytest.mark.parametrize("scale", [0.1, 1.0, 100.0])
def test_soft_threshold_and_prox_agree_with_torch_and_lasso(solved, scale):
    rng = np.random.default_rng(int(scale * 10))
    w, dw = rng.normal(0, scale, size=(6, 7)), rng.normal(0, scale, size=(6, 7))
    t = scale * 0.5
    out = solved["soft_threshold"](w, t)
    np.testing.assert_array_equal(out, F.softshrink(torch.tensor(w), t).numpy())
    assert np.sum(out == 0.0) > 0
    lr, lam = 0.3, 2 * scale
    prox = solved["proximal_l1_step"](w, dw, lr=lr, lam=lam)
    u = (w - lr * dw).ravel()
    lasso = Lasso(alpha=lr * lam / u.size, fit_intercept=False, tol=1e-14, max_iter=10)
    np.testing.assert_allclose(prox.ravel(), lasso.fit(np.eye(u.size), u).coef_, atol=1e-12)
    np.testing.assert_array_equal(prox == 0, lasso.coef_.reshape(prox.shape) == 0)


def test_l1_subgradient_agrees_with_torch_abs_backward(solved):
    w = np.array([-3.0, -1e-300, 0.0, -0.0, 1e-300, 2.0])
    t = torch.tensor(w, requires_grad=True)
    (0.7 * t.abs()).sum().backward()
    np.testing.assert_array_equal(solved["l1_subgradient"](w, 0.7), t.grad.numpy())


@pytest.mark.parametrize("n,k", [(2, 2), (7, 3), (20, 6), (31, 31), (100, 7)])
def test_kfold_indices_agree_with_sklearn(solved, n, k):
    ours = solved["kfold_indices"](n, k)
    theirs = list(KFold(n_splits=k).split(np.zeros((n, 1))))
    assert len(ours) == k
    for (tr, va), (tr2, va2) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(tr, tr2)
        np.testing.assert_array_equal(va, va2)
    assert sorted(np.concatenate([va for _, va in ours]).tolist()) == list(range(n))


def test_choose_lambda_by_cv_agrees_with_sklearn_cross_val_score(solved):
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 6))  # 30 = 5 * 6: every fold has 24 training examples
    y = X @ rng.normal(size=6) + rng.normal(size=30)
    lams = np.logspace(-3, 2, 6)
    best, errors = solved["choose_lambda_by_cv"](X, y, lams, 5, ridge_fit)
    expected = [-cross_val_score(Ridge(alpha=24 * lam, fit_intercept=False), X, y, cv=KFold(5),
                                 scoring="neg_mean_squared_error").mean() for lam in lams]
    np.testing.assert_allclose(errors, expected, rtol=1e-9)
    assert best == lams[int(np.argmin(expected))]


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
    assert "hidden_rng" not in code and "HIDDEN_CURVES" not in code
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


# --- executing the notebooks ---------------------------------------------------------------------
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
    assert "35 of 40 weights exactly 0" in text and "same zeros: True" in text
    explorer = next(c for c in nb.cells if _nbgrader(c)["grade_id"] ==
                    "experiment_overfit_explorer")
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
        if _is_experiment(cell) and _nbgrader(cell)["grade_id"] != "experiment_overfit_explorer":
            assert "implement `" in str(cell.outputs), _nbgrader(cell)["grade_id"]
