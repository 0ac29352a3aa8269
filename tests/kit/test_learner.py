"""dlopt.kit.learner: an unfinished or broken learner function becomes a message, one wording."""

from __future__ import annotations

import numpy as np
import pytest

from dlopt.kit.learner import LearnerError, attempt, attempt_each, explain, probe


def he_normal(fan_in, fan_out, rng):
    raise NotImplementedError("replace this line with your code")


def xavier_normal(fan_in, fan_out, rng):
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=(fan_in, fan_out))


def broken(x):
    raise ZeroDivisionError("oops")


def test_explain_words_every_kind_of_failure():
    assert explain(NotImplementedError(), "relu") == "implement `relu` first"
    assert explain(LearnerError("`f` returned out of shape (1,)"), "f") == \
        "`f` returned out of shape (1,)"
    assert explain(ZeroDivisionError("oops"), "f") == "`f` raised ZeroDivisionError: oops"


def test_attempt_names_the_stub_deep_inside_and_lets_bugs_raise():
    def experiment():
        return he_normal(3, 4, None)

    assert attempt(experiment) == (None, "implement `he_normal` first")
    with pytest.raises(ZeroDivisionError):
        attempt(broken, 1.0)


def test_probe_turns_anything_into_a_message():
    assert probe(broken, 1.0) == (None, "`broken` raised ZeroDivisionError: oops")
    assert probe(he_normal, 3, 4, None) == (None, "implement `he_normal` first")
    with np.errstate(all="raise"):
        value, message = probe(np.log, np.zeros(1))  # floating-point warnings are silenced
    assert message is None and value[0] == -np.inf


def test_attempt_each_keeps_the_order_and_the_labels():
    inits = {"Xavier": xavier_normal, "He": he_normal}
    shapes, messages = attempt_each(inits, lambda init: init(3, 4,
                                                             np.random.default_rng(0)).shape)
    assert shapes == {"Xavier": (3, 4)} and messages == ["He: implement `he_normal` first"]
