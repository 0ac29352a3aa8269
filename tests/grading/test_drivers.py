"""dlopt.grading.drivers.update_rule and the torch.optim oracle: trajectories, state, mistakes."""

import json

import numpy as np
import pytest

from dlopt.grading import Case, CheckFailed, Exercise, ExerciseData, Mistake, codec
from dlopt.grading.drivers.update_rule import run_update_rule
from dlopt.kit import objectives
from dlopt.kit.torch_bridge import torch_update_rule

W0 = np.array([-1.2, 1.0, 0.5])
STATE = {"step": 7, "exp_avg": np.array([0.1, -0.2, 0.3]),
         "exp_avg_sq": np.array([0.01, 0.02, 1e-6])}
HP = {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6}


def adam(w, dw, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
         after=False, correct=True):
    step = state.get("step", 0) + 1
    m = betas[0] * state.get("exp_avg", np.zeros_like(w)) + (1 - betas[0]) * dw
    v = betas[1] * state.get("exp_avg_sq", np.zeros_like(w)) + (1 - betas[1]) * dw * dw
    t = step - 1 if after else step
    m_hat, v_hat = (m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)) if correct else (m, v)
    return w - lr * m_hat / (np.sqrt(v_hat) + eps), {"step": step, "exp_avg": m,
                                                       "exp_avg_sq": v}


def test_adam_written_out_follows_torch_for_100_steps_from_a_carried_state():
    ours, our_state = run_update_rule(adam, W0, objectives.rosenbrock, 100, STATE, **HP)
    theirs, their_state = run_update_rule(torch_update_rule("Adam"), W0, objectives.rosenbrock,
                                          100, STATE, **HP)
    assert ours.shape == (101, 3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    assert our_state["step"] == their_state["step"] == 107
    np.testing.assert_allclose(our_state["exp_avg_sq"], their_state["exp_avg_sq"], rtol=1e-12)


def test_torch_state_keys_are_torch_optims():
    _, sgd = run_update_rule(torch_update_rule("SGD"), W0, objectives.rosenbrock, 3,
                             lr=1e-4, momentum=0.9)
    _, adagrad = run_update_rule(torch_update_rule("Adagrad"), W0, objectives.rosenbrock, 3)
    _, rmsprop = run_update_rule(torch_update_rule("RMSprop"), W0, objectives.rosenbrock, 3)
    assert set(sgd) == {"momentum_buffer"}
    assert set(adagrad) == {"step", "sum"} and adagrad["step"] == 3
    assert set(rmsprop) == {"step", "square_avg"}


def test_the_driver_refuses_in_place_updates_and_bad_returns():
    def in_place(w, dw, state, lr=0.1):
        w -= lr * dw
        return w, state

    with pytest.raises(ValueError, match="changed w in place at step 1"):
        run_update_rule(in_place, W0, objectives.rosenbrock, 2)
    with pytest.raises(ValueError, match=r"must return a pair \(w_next, state\)"):
        run_update_rule(lambda w, dw, state: w - dw, W0, objectives.rosenbrock, 2)


def adam_exercise():
    return Exercise(
        "adam_step", reference=torch_update_rule("Adam"), driver=run_update_rule,
        cases=[Case("100 steps from a carried state", W0, objectives.rosenbrock, 100, STATE,
                    **HP)],
        mistakes=[Mistake("no bias correction", lambda *a, **k: adam(*a, **k, correct=False)),
                  Mistake("step counter incremented after use",
                          lambda *a, **k: adam(*a, **k, after=True))],
        rtol=1e-8, atol=1e-10)


def test_a_driven_exercise_names_the_mistake_and_survives_plain_data():
    exercise = adam_exercise()
    exercise.check(adam)
    with pytest.raises(CheckFailed, match="classic mistake: step counter incremented after use"):
        exercise.check(lambda *a, **k: adam(*a, **k, after=True))
    plain = json.loads(json.dumps(exercise.collect(adam).to_plain()))
    assert plain["driver"] == codec.encode(run_update_rule)
    assert ExerciseData.from_plain(plain).driver is run_update_rule


def test_drivers_must_live_in_dlopt():
    with pytest.raises(codec.UnsupportedValue):
        Exercise("f", reference=abs, cases=[], driver=lambda fn, x: fn(x))
