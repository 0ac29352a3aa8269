"""dlopt.kit.trajectory: the one update-rule loop, its checks and its stopping rules."""

from __future__ import annotations

import numpy as np
import pytest

from dlopt.kit.learner import LearnerError
from dlopt.kit.trajectory import follow_rule, not_finite


def gd(w, dw, state, *, lr=0.1):
    return w - lr * dw, {"calls": state.get("calls", 0) + 1}


def test_steps_follow_the_closed_form_and_carry_the_state():
    run = follow_rule(gd, [1.0, -2.0], lambda w: 2.0 * w, 5, hyperparameters={"lr": 0.1})
    np.testing.assert_allclose(run.points, [[1.0, -2.0] * np.array([0.8**k]).repeat(2)
                                            for k in range(6)], rtol=1e-15)
    assert run.state == {"calls": 5} and run.stopped_at is None and run.states == []


def test_one_learning_rate_per_step_noise_from_the_seed_and_kept_states():
    seen = []

    def record(w, dw, state, *, lr):
        seen.append((lr, dw.copy()))
        return w - lr * dw, {"step": state.get("step", 0) + 1}

    run = follow_rule(record, np.zeros(3), lambda w: np.ones(3), lrs=[0.5, 0.25], noise=0.1,
                      seed=4, keep_states=True, state={"step": 10})
    noises = np.random.default_rng(4).normal(size=(2, 3)) * 0.1
    assert [lr for lr, _ in seen] == [0.5, 0.25]
    np.testing.assert_array_equal(seen[1][1], 1.0 + noises[1])
    assert run.states == [{"step": 11}, {"step": 12}] and run.points.shape == (3, 3)


def test_a_stopping_test_cuts_the_run_before_the_point_that_met_it():
    def explode(w, dw, state):
        return w * 1e200, state

    run = follow_rule(explode, [1.0], lambda w: w, 10, stop=not_finite)
    assert run.stopped_at == 2 and len(run.points) == 2
    assert not np.isfinite(run.stopped_point).all()


@pytest.mark.parametrize("rule,match", [
    (lambda w, dw, state: w, r"must return a pair \(w_next, state\) with state a dict; got "
                             r"ndarray at step 1"),
    (lambda w, dw, state: (w[:1], state), r"returned w of shape \(1,\) at step 1; expected"),
])
def test_unusable_returns_are_refused_with_the_step(rule, match):
    with pytest.raises(LearnerError, match=match):
        follow_rule(rule, [1.0, 2.0], lambda w: w, 3)


def test_an_in_place_update_is_refused_even_when_w_holds_nan():
    def in_place(w, dw, state, lr=0.1):
        w -= lr * dw
        return w, state

    with pytest.raises(LearnerError, match="changed w in place at step 1"):
        follow_rule(in_place, [1.0, 2.0], lambda w: w, 2)
    run = follow_rule(lambda w, dw, state: (w.copy(), state), [np.nan, 1.0], lambda w: w, 2)
    assert run.points.shape == (3, 2)  # nan in w, untouched: not an in-place change


def test_steps_or_lrs_are_needed():
    with pytest.raises(TypeError, match="steps or lrs"):
        follow_rule(gd, [1.0], lambda w: w)
