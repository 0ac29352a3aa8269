"""Lesson 03 (gradient descent, SGD, momentum): structure, checks, solutions, student copy.

Fast tests run the notebook's code cells in this process (experiments excluded): every check
passes with the instructor's solution, every classic mistake listed in a check is caught and
named from the public scenarios alone (and so is the same mistake written out the way a
student would write it), and the solutions agree with torch.optim.SGD beyond the scenarios.
Slow tests execute the solved and the student notebook in a kernel.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
import time
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from dlopt import objectives, surfaces
from dlopt.check import CheckFailed, Exercise
from dlopt.drivers import run_update_rule
from dlopt.explorer import ConvergenceExplorer

ROOT = Path(__file__).resolve().parents[1]
LESSON = "03_gradient_descent"
NOTEBOOK = ROOT / "solutions" / LESSON / f"{LESSON}.ipynb"
GRADED = ["minibatch_gradient", "sgd_step", "sgd_momentum_step"]
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
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in nb.cells:
            if cell.cell_type == "code" and not _is_experiment(cell):
                exec(compile(cell.source, f"<cell {_nbgrader(cell)['grade_id']}>", "exec"),
                     namespace)
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
    assert sorted(exercises) == sorted(GRADED)
    for name in GRADED:
        stub = [i for i, c in enumerate(cells) if _nbgrader(c)["solution"]
                and re.search(rf"^def {name}\(", c.source, re.M)]
        assert len(stub) == 1, name
        before = "\n".join(c.source for c in cells[:stub[0]] if c.cell_type == "markdown")
        assert f"You will implement `{name}`" in before, f"no derivation introduces {name}"
        after = cells[stub[0] + 1]
        assert _nbgrader(after)["grade"] and f".check({name})" in after.source, name


def test_update_rules_have_the_fixed_interface(solved):
    import inspect

    for name, expected in (
            ("sgd_step", "(w, dw, state, *, lr=0.001, weight_decay=0.0)"),
            ("sgd_momentum_step",
             "(w, dw, state, *, lr=0.001, momentum=0.0, nesterov=False, weight_decay=0.0)")):
        assert str(inspect.signature(solved[name])) == expected
    # the defaults are torch.optim.SGD's
    defaults = torch.optim.SGD([torch.zeros(1, requires_grad=True)]).defaults
    assert defaults["lr"] == 1e-3 and defaults["momentum"] == 0 and defaults["weight_decay"] == 0


def test_misconceptions_are_stated():
    text = "\n".join(c.source for c in _read().cells if c.cell_type == "markdown")
    assert "which examples enter the gradient is\nthe whole difference" in text  # no. 11
    assert "Momentum does not normalize the gradient" in text  # no. 4
    assert r"\frac{g}{1-\beta}" in text
    assert "v_t = \\eta\\, b_t" in text  # the two forms of momentum, related
    assert "2/L" in text and "diverge" in text and "condition number" in text


# --- the checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GRADED)
def test_solution_passes_every_scenario(solved, exercises, name):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exercises[name].check(solved[name])  # raises CheckFailed on any failing scenario
    assert f"✓ {name}: all" in out.getvalue()
    assert len(exercises[name].cases) >= 3 and len(exercises[name].hidden_cases) >= 3
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


def test_update_rules_are_driven_over_100_steps_against_torch(exercises):
    from dlopt.oracles import torch_update_rule

    for name in ("sgd_step", "sgd_momentum_step"):
        exercise = exercises[name]
        assert exercise.driver is run_update_rule
        assert exercise.reference.__name__ == "torch.optim.SGD"
        cases = exercise.cases + exercise.hidden_cases
        assert all(case.args[2] == 100 for case in cases)
        assert any(case.args[3] for case in exercise.cases), "a carried state in public"
    momentum_cases = exercises["sgd_momentum_step"].cases
    assert any(c.kwargs.get("nesterov") for c in momentum_cases)
    assert all(c.kwargs.get("lr", 1e-3) != 1e-3 for c in momentum_cases)
    assert torch_update_rule("SGD").__name__ == "torch.optim.SGD"


# --- student-style mistakes, written out, are recognised ---------------------------------------
def _momentum(w, dw, state, *, lr=1e-3, momentum=0.0, nesterov=False, weight_decay=0.0,
              variant=""):
    """A student's sgd_momentum_step with one classic slip selected by ``variant``."""
    g = dw if variant == "no decay" else dw + weight_decay * w
    old = None if variant == "reset" else state.get("momentum_buffer")
    if variant == "lr inside":
        v = lr * g if old is None else momentum * old + lr * g
        step = lr * g + momentum * v if nesterov else v
        return w - step, {"momentum_buffer": v}
    if variant == "ema":
        buffer = momentum * (0.0 if old is None else old) + (1 - momentum) * g
    else:
        buffer = g.copy() if old is None else momentum * old + g
    direction = g + momentum * buffer if nesterov and variant != "no look-ahead" else buffer
    if variant == "decay outside":
        buffer = dw.copy() if old is None else momentum * old + dw
        direction = (dw + momentum * buffer if nesterov else buffer) + weight_decay * w
    return w - lr * direction, {"momentum_buffer": buffer}


MOMENTUM_SLIPS = {
    "reset": "not kept between steps",
    "no look-ahead": "Nesterov without the look-ahead",
    "lr inside": "lr inside the buffer",
    "ema": "an exponential average",
    "decay outside": "weight decay added outside the buffer",
    "no decay": "weight decay not applied",
}


@pytest.mark.parametrize("variant", MOMENTUM_SLIPS)
def test_a_students_momentum_slip_is_named(exercises, variant):
    def student(w, dw, state, **hp):
        return _momentum(w, dw, state, **hp, variant=variant)

    with pytest.raises(CheckFailed) as failure:
        _public_only(exercises["sgd_momentum_step"]).check(student)
    named = re.findall(re.escape(MISTAKE_PREFIX) + r"(.*)", str(failure.value))
    assert named and all(MOMENTUM_SLIPS[variant] in n for n in named), str(failure.value)


SGD_SLIPS = {
    "ascent": (lambda w, dw, s, *, lr=1e-3, weight_decay=0.0: (w + lr * (dw + weight_decay * w), s),
               "sign flipped"),
    "no decay": (lambda w, dw, s, *, lr=1e-3, weight_decay=0.0: (w - lr * dw, s),
                 "weight decay not applied"),
    "decay without lr": (lambda w, dw, s, *, lr=1e-3, weight_decay=0.0:
                         (w - lr * dw - weight_decay * w, s), "not scaled by lr"),
    "decay after": (lambda w, dw, s, *, lr=1e-3, weight_decay=0.0:
                    ((w - lr * dw) - lr * weight_decay * (w - lr * dw), s), "after the update"),
    "empty state": (lambda w, dw, s, *, lr=1e-3, weight_decay=0.0:
                    (w - lr * (dw + weight_decay * w), {}), "returned an empty state"),
}


@pytest.mark.parametrize("slip", SGD_SLIPS)
def test_a_students_sgd_slip_is_named(exercises, slip):
    student, phrase = SGD_SLIPS[slip]
    with pytest.raises(CheckFailed) as failure:
        _public_only(exercises["sgd_step"]).check(student)
    assert MISTAKE_PREFIX in str(failure.value) and phrase in str(failure.value)


MINIBATCH_SLIPS = {
    "full batch": (lambda w, X, y, idx: X.T @ (X @ w - y) / len(X), "used every example"),
    "sum": (lambda w, X, y, idx: X[idx].T @ (X[idx] @ w - y[idx]), "summed over the batch"),
    "by n": (lambda w, X, y, idx: X[idx].T @ (X[idx] @ w - y[idx]) / len(X), "divided by n"),
    "labels": (lambda w, X, y, idx: X[idx].T @ (X[idx] @ w - y[:len(idx)]) / len(idx),
               "wrong targets"),
    "sign": (lambda w, X, y, idx: X[idx].T @ (y[idx] - X[idx] @ w) / len(idx), "sign flipped"),
}


@pytest.mark.parametrize("slip", MINIBATCH_SLIPS)
def test_a_students_minibatch_slip_is_named(exercises, slip):
    student, phrase = MINIBATCH_SLIPS[slip]
    with pytest.raises(CheckFailed) as failure:
        _public_only(exercises["minibatch_gradient"]).check(student)
    assert MISTAKE_PREFIX in str(failure.value) and phrase in str(failure.value)


# --- the solutions beyond the scenarios --------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_momentum_follows_a_real_torch_optimizer_and_hands_its_state_over(solved, seed):
    """Random hyperparameters; after 20 steps the state moves into torch.optim.SGD and back."""
    rng = np.random.default_rng(seed)
    hp = {"lr": float(rng.uniform(1e-3, 0.05)), "momentum": float(rng.uniform(0.1, 0.95)),
          "nesterov": bool(seed % 2), "weight_decay": float(rng.uniform(0, 0.1))}
    step = solved["sgd_momentum_step"]
    w0 = rng.normal(size=(3, 2))
    w, state = w0.copy(), {}
    for _ in range(20):
        w, state = step(w, objectives.wavy_bowl_grad(w), state, **hp)
    param = torch.tensor(w, requires_grad=True)
    opt = torch.optim.SGD([param], **hp)
    opt.state[param] = {"momentum_buffer": torch.tensor(state["momentum_buffer"])}
    for _ in range(20):
        ours_w, state = step(w, objectives.wavy_bowl_grad(w), state, **hp)
        param.grad = torch.tensor(objectives.wavy_bowl_grad(param.detach().numpy()))
        opt.step()
        w = ours_w
        np.testing.assert_allclose(w, param.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state["momentum_buffer"],
                               opt.state[param]["momentum_buffer"].numpy(), rtol=1e-12)


def test_rules_leave_their_inputs_alone(solved):
    w, dw = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    buffer = np.array([0.1, 0.2])
    state = {"momentum_buffer": buffer}
    w_next, new_state = solved["sgd_momentum_step"](w, dw, state, lr=0.1, momentum=0.9,
                                                    weight_decay=0.1)
    np.testing.assert_array_equal(w, [1.0, -2.0])
    np.testing.assert_array_equal(buffer, [0.1, 0.2])
    assert state["momentum_buffer"] is buffer and new_state["momentum_buffer"] is not buffer
    fresh_w, fresh = solved["sgd_momentum_step"](w, dw, {}, lr=0.1, momentum=0.9)
    assert fresh["momentum_buffer"] is not dw  # a copy, as torch's clone
    plain_w, plain = solved["sgd_momentum_step"](w, dw, {}, lr=0.1)
    assert plain == {}  # momentum 0: no buffer, like torch
    np.testing.assert_array_equal(plain_w, solved["sgd_step"](w, dw, {}, lr=0.1)[0])


def test_the_two_forms_of_momentum_give_one_trajectory(solved):
    surface = surfaces.rosenbrock()
    lr, beta = 1e-3, 0.9
    w_torch, state = np.array(surface.start), {}
    w_velocity, v = np.array(surface.start), np.zeros(2)
    for _ in range(200):
        w_torch, state = solved["sgd_momentum_step"](w_torch, surface.grad(w_torch), state,
                                                     lr=lr, momentum=beta)
        v = beta * v + lr * surface.grad(w_velocity)
        w_velocity = w_velocity - v
        np.testing.assert_allclose(lr * state["momentum_buffer"], v, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(w_torch, w_velocity, rtol=1e-12)


def test_minibatch_gradient_is_the_mean_of_single_example_gradients(solved):
    fn = solved["minibatch_gradient"]
    rng = np.random.default_rng(5)
    X, Y, w = rng.normal(size=(30, 4)), rng.normal(size=(30, 2)), rng.normal(size=(4, 2))
    idx = rng.choice(30, size=7, replace=False)
    singles = np.mean([fn(w, X, Y, np.array([i])) for i in idx], axis=0)
    np.testing.assert_allclose(fn(w, X, Y, idx), singles, rtol=1e-12)
    full = np.mean([fn(w, X, Y, np.array([i])) for i in range(30)], axis=0)
    np.testing.assert_allclose(fn(w, X, Y, np.arange(30)), full, rtol=1e-12)


def test_the_explorer_runs_the_lessons_rules(solved):
    widget = ConvergenceExplorer({"gd": (solved["sgd_step"], {}),
                                  "nesterov": (solved["sgd_momentum_step"], {"nesterov": True})},
                                 steps=60, lr=0.3)
    assert widget.messages == [] and set(widget.runs) == {"gd", "nesterov"}
    assert widget.runs["nesterov"].losses[-1] < widget.runs["gd"].losses[-1]
    widget.lr.value = 2.5
    assert "gd diverged at step" in " ".join(widget.messages)


# --- dlopt.minibatch, the experiments' loop -------------------------------------------------------
def test_batch_indices_cover_each_example_once_per_epoch():
    from dlopt.minibatch import batch_indices

    batches = batch_indices(10, 4, np.random.default_rng(0))
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(10))
    assert len(batch_indices(10, 50, np.random.default_rng(0))) == 1
    with pytest.raises(ValueError):
        batch_indices(10, 0, np.random.default_rng(0))


def test_least_squares_problem_loss_and_noise(solved):
    from dlopt import minibatch

    problem = minibatch.digits_least_squares()
    X, Y = problem.X, problem.Y
    assert X.shape == (1347, 61) and Y.shape == (1347, 10) and np.all(X[:, -1] == 1.0)
    assert np.abs(X).max() <= 3.0 and problem.X_test.shape[1] == 61
    w = np.random.default_rng(1).normal(size=(61, 10))
    assert minibatch.least_squares_loss(w, X, Y) == pytest.approx(
        0.5 * np.sum((X @ w - Y) ** 2) / len(X), rel=1e-12)
    noise = minibatch.gradient_noise(solved["minibatch_gradient"], w, X, Y, [1, 64, 1347],
                                     draws=20)
    assert noise[0] > noise[1] > 0 and noise[2] == pytest.approx(0.0, abs=1e-20)


def test_train_is_gd_sgd_or_minibatch_by_the_batch_size_alone(solved):
    from dlopt import minibatch

    problem = minibatch.digits_least_squares()
    X, Y = problem.X[:200], problem.Y[:200]
    grad, step = solved["minibatch_gradient"], solved["sgd_step"]
    full = minibatch.train(grad, step, X, Y, batch_size=500, epochs=5,
                           hyperparameters={"lr": 0.1})
    w = np.zeros((61, 10))
    for _ in range(5):
        w = w - 0.1 * X.T @ (X @ w - Y) / len(X)
    np.testing.assert_allclose(full.w, w, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(full.steps, np.arange(6))
    sgd = minibatch.train(grad, step, X, Y, batch_size=1, epochs=2, hyperparameters={"lr": 0.005})
    assert sgd.steps[-1] == 400 and sgd.epochs[-1] == pytest.approx(2.0)
    assert sgd.losses[-1] < sgd.losses[0] and not sgd.diverged
    wild = minibatch.train(grad, step, X, Y, batch_size=200, epochs=200,
                           hyperparameters={"lr": 5.0})
    assert wild.diverged and np.isnan(wild.losses[-1])
    timing = minibatch.step_seconds(grad, step, X, Y, 10, hyperparameters={"lr": 0.1}, repeat=3)
    assert len(timing.runs) == 3 and timing.median > 0


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


def test_student_copy_stops_only_at_checks_and_its_experiments_say_what_to_implement():
    namespace: dict = {}
    raised, experiments = [], 0
    for cell in _student_copy().cells:
        if cell.cell_type != "code":
            continue
        gid = _nbgrader(cell)["grade_id"]
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # as in a notebook: printed, not raised
                if gid == "experiment_explorer":
                    widget = eval(compile(cell.source, gid, "eval"), namespace)
                    print(*widget.messages, sep="\n")
                else:
                    exec(compile(cell.source, gid, "exec"), namespace)
        except NotImplementedError as exc:
            assert _nbgrader(cell)["grade"], f"only check cells may stop: {gid}"
            assert "is not implemented yet" in str(exc)
            raised.append(gid)
        if _is_experiment(cell):
            experiments += 1
            assert "implement `" in out.getvalue(), gid
    graded = [_nbgrader(c)["grade_id"] for c in _read().cells if _nbgrader(c)["grade"]]
    assert raised == graded and experiments >= 8


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
    assert "implement `" not in text and "diverged" not in text
    explorer_cell = next(c for c in nb.cells if _nbgrader(c)["grade_id"] == "experiment_explorer")
    assert "image/png" in explorer_cell.outputs[0]["data"]
