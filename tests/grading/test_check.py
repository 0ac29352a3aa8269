"""dlopt.grading: the verdicts and messages a student and the grader both see."""

import json

import numpy as np
import pytest
import torch

from dlopt.grading import (
    EXERCISE_MIME,
    Case,
    CheckFailed,
    Exercise,
    ExerciseData,
    Mistake,
    Outcome,
    call,
    judge,
)
from dlopt_instructor.oracles import torch_derivative, torch_function, torch_jvp


def stable_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_exercise():
    return Exercise(
        "sigmoid",
        reference=torch_function(torch.sigmoid),
        cases=[Case("a few values", np.array([-2.0, 0.0, 2.0])),
               Case("large magnitudes", np.array([-1000.0, -40.0, 40.0, 1000.0]))],
        mistakes=[Mistake("exp(x)/(1+exp(x)) overflows", lambda x: np.exp(x) / (1 + np.exp(x))),
                  Mistake("sign flipped", lambda x: 1 / (1 + np.exp(x)))],
    )


def test_a_correct_function_passes_and_says_so(capsys):
    assert sigmoid_exercise().check(stable_sigmoid) is None
    assert "✓ sigmoid: all 2 public scenarios pass." in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # a kernel prints these, never raises
def test_overflow_is_named_with_the_first_bad_value():
    with pytest.raises(CheckFailed) as failure:
        sigmoid_exercise().check(lambda x: np.exp(x) / (1 + np.exp(x)))
    message = str(failure.value)
    assert "scenario 'large magnitudes'" in message
    assert "nan at index 3 where 1 was expected" in message
    assert "classic mistake: exp(x)/(1+exp(x)) overflows" in message
    assert "'a few values'" not in message  # that scenario passed


def test_a_wrong_value_gets_numeric_diagnostics_when_no_mistake_matches():
    with pytest.raises(CheckFailed) as failure:
        sigmoid_exercise().check(lambda x: stable_sigmoid(x) + (x > 30) * 1e-3)
    message = str(failure.value)
    assert "2 of 4 entries are wrong; the first at index 2" in message
    assert "classic mistake" not in message


@pytest.mark.parametrize("wrong, expected_words", [
    (lambda x: stable_sigmoid(x)[:, None], "returned shape (3, 1), expected (3,)"),
    (lambda x: float(stable_sigmoid(x).sum()), "did a sum or mean reduce it?"),
    (lambda x: list(stable_sigmoid(x)), "returned list; expected an array of shape (3,)"),
    (lambda x: x.astype(str), "returned an array of dtype <U"),
])
def test_shape_and_type_problems_are_named(wrong, expected_words):
    with pytest.raises(CheckFailed) as failure:
        sigmoid_exercise().check(wrong)
    assert expected_words in str(failure.value)


def test_an_unanswered_stub_raises_not_implemented_with_guidance():
    def sigmoid(x):
        raise NotImplementedError("replace this line with your code")

    with pytest.raises(NotImplementedError, match="sigmoid is not implemented yet"):
        sigmoid_exercise().check(sigmoid)


def test_changing_the_input_in_place_fails_even_with_right_values():
    def relu_in_place(x):
        x[x < 0] = 0
        return x

    exercise = Exercise("relu", reference=torch_function(torch.relu),
                        cases=[Case("mixed signs", np.array([-1.0, 2.0]))])
    with pytest.raises(CheckFailed, match=r"changed its input \(argument 1\) in place"):
        exercise.check(relu_in_place)


def test_float32_results_within_tolerance_pass():
    sigmoid_exercise().check(lambda x: stable_sigmoid(x).astype(np.float32))


def test_expected_exceptions_are_checked_by_type():
    def reference(p):
        if not 0 <= p < 1:
            raise ValueError("p must be in [0, 1)")
        return p

    exercise = Exercise("keep", reference=reference, cases=[Case("p = 1 is invalid", 1.0)])
    exercise.check(reference)
    with pytest.raises(CheckFailed, match="should raise ValueError"):
        exercise.check(lambda p: p)


def test_hidden_scenarios_are_reported_as_hidden():
    exercise = sigmoid_exercise()
    exercise.add_hidden(Case("very large batch", np.linspace(-800, 800, 9)))
    data = exercise.collect(torch_function(torch.sigmoid))
    verdict = judge(data, [call(lambda x: np.exp(x) / (1 + np.exp(x)), Case("", *c.args))
                           for c in data.cases])
    assert [c.hidden for c in verdict.cases] == [False, False, True]
    assert "hidden scenario 'very large batch'" in verdict.message


def test_plain_round_trip_gives_the_same_verdict():
    exercise = sigmoid_exercise()
    data = exercise.collect(stable_sigmoid)
    back = ExerciseData.from_plain(json.loads(json.dumps(data.to_plain())))
    wrong = [call(lambda x: 1 / (1 + np.exp(x)), Case("", *c.args)) for c in data.cases]
    plain_wrong = [Outcome.from_plain(json.loads(json.dumps(o.to_plain()))) for o in wrong]
    assert judge(back, plain_wrong).message == judge(data, wrong).message
    assert "sign flipped" in judge(back, plain_wrong).message


def test_malformed_outcomes_fail_instead_of_crashing():
    data = sigmoid_exercise().collect(stable_sigmoid)
    verdict = judge(data, [Outcome.from_plain({"value": {"t": "pickle"}}), Outcome.from_plain({})])
    assert not verdict.passed
    assert "could not read this result" in verdict.cases[0].problem


def test_missing_outcomes_count_as_not_run():
    data = sigmoid_exercise().collect(stable_sigmoid)
    verdict = judge(data, [])
    assert verdict.n_passed == 0 and "was not run" in verdict.cases[0].problem


def test_export_mode_publishes_plain_data_and_checks_the_solution(monkeypatch):
    published = []
    monkeypatch.setenv("DLOPT_EXPORT_EXERCISES", "1")
    monkeypatch.setattr("IPython.display.publish_display_data", published.append)
    sigmoid_exercise().check(stable_sigmoid)
    data = json.loads(json.dumps(published[0][EXERCISE_MIME]))
    assert data["function"] == "sigmoid" and len(data["cases"]) == 2
    assert len(data["cases"][1]["mistake_outputs"]) == 2
    with pytest.raises(CheckFailed, match="instructor's solution disagrees"):
        sigmoid_exercise().check(lambda x: 1 / (1 + np.exp(x)))


def test_check_failed_renders_without_a_traceback():
    lines = CheckFailed("✗ f: 0 of 1\n  detail")._render_traceback_()
    assert len(lines) == 2 and "detail" in lines[1]


def test_oracles_match_known_derivatives():
    x = np.array([-1.0, 0.5, 2.0])
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(torch_derivative(torch.sigmoid)(x), s * (1 - s))
    np.testing.assert_allclose(torch_derivative(torch.relu)(np.array([-1.0, 0.0, 1.0])),
                               [0.0, 0.0, 1.0])
    z, v = np.array([[1.0, 2.0, 3.0]]), np.array([[0.5, -1.0, 2.0]])
    p = np.exp(z) / np.exp(z).sum()
    jacobian = np.diag(p[0]) - np.outer(p[0], p[0])
    np.testing.assert_allclose(torch_jvp(lambda t: torch.softmax(t, -1))(z, v), v @ jacobian)


def test_comparisons_survive_non_finite_expected_values():
    from dlopt.grading import compare

    assert "got 0, expected nan" in compare(np.zeros(2), np.array([np.nan, np.nan]), 1e-5, 1e-8)
    assert compare(np.array([np.inf, 1.0]), np.array([np.inf, 1.0]), 1e-5, 1e-8) == ""
    assert compare(np.array([np.nan, 2.0]), np.array([np.inf, 2.0]), 1e-5, 1e-8) == (
        "1 of 2 entries are wrong; the first at index 0: got nan, expected inf")


def test_a_mistake_that_changes_its_input_in_place_is_named():
    def forward_then_restore_forgotten(x):
        out = x * 2.0
        x += 1.0
        return out

    exercise = Exercise("double", reference=lambda x: x * 2.0,
                        cases=[Case("two values", np.array([1.0, 2.0]))],
                        mistakes=[Mistake("x was left modified", forward_then_restore_forgotten),
                                  Mistake("returned x itself", lambda x: x)])
    with pytest.raises(CheckFailed) as failure:
        exercise.check(forward_then_restore_forgotten)
    assert "changed its input" in str(failure.value)
    assert "classic mistake: x was left modified" in str(failure.value)


def test_oracles_work_under_no_grad():
    with torch.no_grad():
        np.testing.assert_allclose(torch_derivative(torch.tanh)(np.zeros(2)), [1.0, 1.0])


def test_a_mistake_that_raises_never_names_a_learners_error():
    exercise = Exercise("f", reference=lambda x: x.sum(axis=1),
                        cases=[Case("a matrix", np.ones((2, 3)))],
                        mistakes=[Mistake("one-hot formula", lambda x: x[np.arange(2), [5, 7]])])
    with pytest.raises(CheckFailed) as failure:
        exercise.check(lambda x: x.sum(axis=2))
    assert "classic mistake" not in str(failure.value)
    assert "raised AxisError" in str(failure.value)


def test_comparing_an_array_with_none_or_a_string_does_not_crash():
    from dlopt.grading import compare

    assert compare(np.zeros(3), None, 1e-5, 1e-8) == (
        "returned an array of shape (3,), expected None")
    assert "expected 'mask'" in compare(np.zeros(3), "mask", 1e-5, 1e-8)
