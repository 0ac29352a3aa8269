"""Lesson 03 (gradient descent, SGD, momentum): what this lesson alone states and computes.

The contract every lesson keeps (structure, checks, student copy, notebook runs) is tested in
test_lesson_contract.py. Here: the graded functions and their interfaces are the expected ones,
the misconceptions are stated, the same classic mistakes written out the way a student would
write them are named, the solutions agree with torch.optim.SGD beyond the scenarios, the
experiments' helpers work, and the student copy's experiments say what to implement.
"""

from __future__ import annotations

import re

import lesson_harness as harness
import numpy as np
import pytest
import torch
from lesson_harness import MISTAKE_PREFIX

from dlopt.grading.drivers.update_rule import run_update_rule
from dlopt.kit import objectives, surfaces
from dlopt.lessons.l03_gradient_descent.explorer import ConvergenceExplorer

LESSON = "03_gradient_descent"
GRADED = ["minibatch_gradient", "sgd_step", "clip_grad_norm", "sgd_momentum_step"]
solved, exercises = harness.solved, harness.exercises  # fixtures, for LESSON


# --- what this lesson states --------------------------------------------------------------------
test_graded_functions_are_the_expected_ones = harness.graded_functions_test(LESSON, GRADED)


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
    text = harness.markdown(LESSON)
    assert "which examples enter $g_B$ is the\nwhole difference" in text  # no. 11
    assert "Momentum does not normalize the gradient" in text  # no. 4
    assert r"\frac{g}{1-\beta}" in text
    assert "v_t = \\eta\\, b_t" in text  # the two forms of momentum, related
    assert "2/L" in text and "diverge" in text and "condition number" in text


# --- the checks --------------------------------------------------------------------------------
def test_update_rules_are_driven_over_100_steps_against_torch(exercises):
    from dlopt.kit.torch_bridge import torch_update_rule

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
    if variant == "normalized":
        g = g / np.linalg.norm(g)
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
    "normalized": "momentum does not normalize the gradient",
}


@pytest.mark.parametrize("variant", MOMENTUM_SLIPS)
def test_a_students_momentum_slip_is_named(exercises, variant):
    def student(w, dw, state, **hp):
        return _momentum(w, dw, state, **hp, variant=variant)

    message = harness.public_failure(exercises["sgd_momentum_step"], student, quiet=False)
    named = re.findall(re.escape(MISTAKE_PREFIX) + r"(.*)", message)
    assert named and all(MOMENTUM_SLIPS[variant] in n for n in named), message


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
    message = harness.public_failure(exercises["sgd_step"], student, quiet=False)
    assert MISTAKE_PREFIX in message and phrase in message


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
    message = harness.public_failure(exercises["minibatch_gradient"], student, quiet=False)
    assert MISTAKE_PREFIX in message and phrase in message


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
    surface = surfaces.rosenbrock_surface()
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


# --- dlopt.lessons.l03_gradient_descent.minibatch, the experiments' loop ----------------------
def test_batch_indices_cover_each_example_once_per_epoch():
    from dlopt.lessons.l03_gradient_descent.minibatch import batch_indices

    batches = batch_indices(10, 4, np.random.default_rng(0))
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(10))
    assert len(batch_indices(10, 50, np.random.default_rng(0))) == 1
    with pytest.raises(ValueError):
        batch_indices(10, 0, np.random.default_rng(0))


def test_least_squares_problem_loss_and_noise(solved):
    from dlopt.lessons.l03_gradient_descent import minibatch

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
    from dlopt.lessons.l03_gradient_descent import minibatch

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


# --- the student copy -----------------------------------------------------------------------------
def test_student_copy_experiments_say_what_to_implement():
    run = harness.run_student_copy(LESSON, experiments=True, quiet_warnings=True)
    assert run.raised == harness.check_cell_ids(LESSON)
    experiments = [harness.grade_id(c) for c in harness.student_copy(LESSON).cells
                   if c.cell_type == "code" and harness.is_experiment(c)]
    assert len(experiments) >= 8
    explorer = run.values["experiment_explorer"]  # the widget the cell displays
    for gid in experiments:
        shown = run.printed[gid] + ("\n".join(explorer.messages)
                                    if gid == "experiment_explorer" else "")
        assert "implement `" in shown, gid


# --- the executed notebook ------------------------------------------------------------------------
@pytest.mark.slow
def test_solved_notebook_does_not_diverge_and_draws_its_explorer():
    nb = harness.executed_solution(LESSON)
    assert "diverged" not in harness.printed_text(nb)
    harness.assert_draws_a_figure(nb, "experiment_explorer")


def test_noise_text_quotes_the_measured_and_predicted_noise():
    """md_noise's quoted errors (b = 1, 16, 1024) agree with sigma^2/b (n-b)/(n-1) on the digits
    and with what the experiment's draws give (seeded)."""
    from dlopt.lessons.l03_gradient_descent import minibatch

    digits = minibatch.digits_least_squares(seed=0)
    X, Y = digits.X, digits.Y
    n = len(X)
    per_example = X[:, :, None] * (-Y)[:, None, :]  # gradients at w = 0: x_i (0 - y_i)^T
    full = per_example.mean(axis=0)
    sigma2 = np.mean(np.sum((per_example - full) ** 2, axis=(1, 2)))
    predicted = {b: sigma2 / b * (n - b) / (n - 1) / np.sum(full**2) for b in (1, 16, 1024)}
    assert round(predicted[1]) in (24, 25) and round(predicted[16], 1) == 1.5
    assert round(predicted[1024], 3) == 0.006

    def gradient(w, X, Y, idx):
        return X[idx].T @ (X[idx] @ w - Y[idx]) / len(idx)

    measured = minibatch.gradient_noise(gradient, np.zeros((X.shape[1], 10)), X, Y, [1, 16, 1024],
                                        draws=100)
    assert round(measured[1], 1) == 1.5 and round(measured[2], 3) == 0.006
    text = " ".join(harness.markdown(LESSON).split())
    assert "relative squared error around 25" in text
    assert "a batch of 16 brings the error to about 1.5, and a batch of 1024 to about 0.006" in text


# --- gradient clipping (issue 14, item 8) ------------------------------------------------------
def _torch_clip(grads, max_norm):
    params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g)
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad.numpy() for p in params], float(total)


@pytest.mark.parametrize("seed,max_norm", [(0, 0.5), (1, 5.0), (2, 1e3), (3, 1e-3)])
def test_clip_grad_norm_agrees_with_torch_and_leaves_its_inputs_alone(solved, seed, max_norm):
    rng = np.random.default_rng(seed)
    grads = [rng.normal(0.0, 3.0, size=s) for s in [(3, 4), (4,), (2, 2, 2)]]
    before = [g.copy() for g in grads]
    clipped, total = solved["clip_grad_norm"](grads, max_norm)
    expected, expected_total = _torch_clip(grads, max_norm)
    np.testing.assert_allclose(total, expected_total, rtol=1e-12)
    for got, want, original, copy in zip(clipped, expected, grads, before, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(original, copy)
    norm = np.sqrt(sum(np.sum(g**2) for g in clipped))
    assert norm <= max_norm * (1 + 1e-12) or norm == pytest.approx(total)


def _per_tensor(grads, max_norm):
    total = float(np.sqrt(sum(np.sum(g**2) for g in grads)))
    return [g * min(1.0, max_norm / (np.linalg.norm(g) + 1e-6)) for g in grads], total


def _by_value(grads, max_norm):
    total = float(np.sqrt(sum(np.sum(g**2) for g in grads)))
    return [np.clip(g, -max_norm, max_norm) for g in grads], total


def _always(grads, max_norm):
    total = float(np.sqrt(sum(np.sum(g**2) for g in grads)))
    return [g * max_norm / (total + 1e-6) for g in grads], total


def _no_eps(grads, max_norm):
    total = float(np.sqrt(sum(np.sum(g**2) for g in grads)))
    scale = min(1.0, max_norm / total) if total > 0 else 1.0
    return [g * scale for g in grads], total


CLIP_SLIPS = {
    "per tensor": (_per_tensor, "each array was clipped on its own"),
    "by value": (_by_value, "clipped by value"),
    "always": (_always, "scaled even though the total norm was below max_norm"),
    "no eps": (_no_eps, "torch's 1e-6 is missing"),
}


@pytest.mark.parametrize("slip", CLIP_SLIPS)
def test_a_students_clipping_slip_is_named(exercises, slip):
    student, phrase = CLIP_SLIPS[slip]
    message = harness.public_failure(exercises["clip_grad_norm"], student, quiet=False)
    assert MISTAKE_PREFIX + phrase in message, message


def test_clipping_experiment_quotes_what_it_computes(solved):
    """md_clipping_experiment: from (-1.8, -0.8) with lr 1.5e-3 the gradient's norm is about 3000
    and the first unclipped step about 4.5 long; plain gradient descent overflows within 7 steps;
    max_norm 1000 clips only the first step; max_norm 1 clips more than half of the 3000 steps
    and ends several times higher than 10 or 1000."""
    from dlopt.lessons.l03_gradient_descent import clipping_lab

    runs = clipping_lab.clipping_runs(solved["clip_grad_norm"], solved["sgd_step"],
                                      [None, 1.0, 10.0, 1000.0], start=(-1.8, -0.8), lr=1.5e-3,
                                      steps=3000)
    plain, one, ten, thousand = runs
    assert round(plain.norms[0], -3) == 3000
    assert round(np.linalg.norm(plain.points[1] - plain.points[0]), 1) == 4.5
    assert plain.diverged_at is not None and plain.diverged_at <= 7
    assert all(r.diverged_at is None and r.losses[-1] < 0.05 for r in (one, ten, thousand))
    assert thousand.clipped.sum() == 1 and thousand.clipped[0]
    assert one.clipped.sum() > 1500
    assert one.losses[-1] > 3 * max(ten.losses[-1], thousand.losses[-1])
    hessian_at_minimum = np.array([[802.0, -400.0], [-400.0, 200.0]])  # Rosenbrock at (1, 1)
    assert round(2 / np.linalg.eigvalsh(hessian_at_minimum)[-1], 4) == 0.002
    text = " ".join(harness.markdown(LESSON).split())
    for phrase in ("the gradient's norm is about 3000", "the first step is about 4.5 long",
                   "within 7 steps", "it clips a single step, the first",
                   "more than half of the steps are clipped"):
        assert phrase in text, phrase
