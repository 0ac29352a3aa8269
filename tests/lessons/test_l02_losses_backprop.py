"""Lesson 02 (losses, backprop, initialization): what this lesson alone states and computes.

The contract every lesson keeps (structure, checks, student copy, notebook runs) is tested in
test_lesson_contract.py. Here: the graded functions and their drivers are the expected ones, the
misconceptions are stated, the solutions agree with torch on random inputs beyond the scenarios,
the MLP trains on the digits, and the executed notebook shows its lesson-specific outputs.
"""

from __future__ import annotations

import copy
import re

import lesson_harness as harness
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lesson_harness import MISTAKE_PREFIX

from dlopt.grading import Exercise
from dlopt.kit.data import load_digits_split
from dlopt.lessons.l02_losses_backprop import mlp_lab
from dlopt_instructor.backprop import (
    torch_linear_backward,
    torch_linear_forward,
    torch_loss,
    torch_loss_grad,
    torch_mlp_loss_and_grads,
)

LESSON = "02_losses_backprop"
GRADED = [
    "mse_loss", "mse_loss_grad", "bce_with_logits", "cross_entropy", "cross_entropy_grad",
    "linear_forward", "linear_backward", "one_hot", "standardize_split", "mlp_loss_and_grads",
    "xavier_normal", "he_normal",
]
EXERCISES = [
    "mse_loss", "mse_loss_grad", "bce_with_logits", "cross_entropy", "cross_entropy_grad",
    "linear_forward", "linear_backward", "one_hot via run_one_hot", "standardize_split",
    "mlp_loss_and_grads", "xavier_normal via draw_with_seed", "xavier_normal via sample_std",
    "he_normal via draw_with_seed", "he_normal via sample_std",
]
solved = harness.solved  # a fixture: the solved notebook's namespace, for LESSON


def _label(exercise: Exercise) -> str:
    driver = "" if exercise.driver is None else f" via {exercise.driver.__name__}"
    return exercise.function + driver


@pytest.fixture(scope="module")
def exercises() -> dict[str, Exercise]:
    return {_label(e): e for e in harness.exercises_by_variable(LESSON).values()}


# --- what this lesson states --------------------------------------------------------------------
test_graded_functions_are_the_expected_ones = harness.graded_functions_test(LESSON, GRADED)


def test_exercises_and_their_drivers_are_the_expected_ones(exercises):
    assert sorted(exercises) == sorted(EXERCISES)


def test_misconceptions_are_stated():
    text = harness.markdown(LESSON)
    for phrase in ("Double softmax", "One-hot targets where class indices are expected",
                   "from_logits", "np.exp(1000.0)", "Mean in the loss, sum in the gradient",
                   "the gradient of ReLU is not \"1\"", "not a standard deviation"):
        assert phrase in text, phrase


# --- the checks --------------------------------------------------------------------------------
def test_a_shape_error_is_not_named_as_a_shape_sensitive_mistake(exercises):
    def no_keepdims(z, y):  # (N, C) - (N,) fails for N != C: a bug, not the one-hot formula
        shifted = z - z.max(axis=1)
        lse = np.log(np.sum(np.exp(shifted), axis=1))
        return float(np.mean(lse - shifted[np.arange(len(y)), y]))

    message = harness.public_failure(exercises["cross_entropy"], no_keepdims, quiet=False)
    assert "broadcast" in message and MISTAKE_PREFIX not in message


def test_points_add_up():
    points = {harness.grade_id(c): harness.nbgrader(c)["points"]
              for c in harness.read(LESSON).cells if harness.nbgrader(c)["grade"]}
    assert sum(points.values()) == 16, points


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


# --- the executed notebook ------------------------------------------------------------------------
@pytest.mark.slow
def test_solved_notebook_shows_the_gradient_checks_the_accuracy_and_the_explorer():
    nb = harness.executed_solution(LESSON)
    text = harness.printed_text(nb)
    assert text.count("agrees") == 2 and text.count("DISAGREES") == 2
    accuracy = float(re.search(r"test accuracy after \d+ epochs: ([\d.]+)%", text).group(1))
    assert accuracy >= 95.0
    harness.assert_draws_a_figure(nb, "experiment_init_explorer")


# --- preparing the data (issue 14, item 10) ------------------------------------------------------
def test_sections_are_numbered_in_order_after_the_new_preprocessing_section():
    headings = re.findall(r"^## (\d+) · ", harness.markdown(LESSON), flags=re.M)
    assert headings == [str(i) for i in range(1, 13)]
    sources = harness.cell_sources(LESSON)
    assert sources["md_one_hot"].startswith("## 7 · Preparing the data")
    assert "section 11 derives both" in sources["md_training"]


@pytest.mark.parametrize("num_classes", [1, 3, 10])
def test_one_hot_agrees_with_torch_and_refuses_labels_out_of_range(solved, num_classes):
    rng = np.random.default_rng(num_classes)
    y = rng.integers(0, num_classes, size=17)
    got = solved["one_hot"](y, num_classes)
    expected = F.one_hot(torch.as_tensor(y), num_classes).numpy()
    assert got.dtype.kind in "iu" and got.shape == (17, num_classes)
    np.testing.assert_array_equal(got, expected)
    for bad in (num_classes, -1):
        with pytest.raises(ValueError):
            solved["one_hot"](np.array([0, bad]), num_classes)


def test_standardize_split_agrees_with_standard_scaler_fitted_on_train(solved):
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(7)
    X_train = np.column_stack([rng.normal(3.0, 2.0, size=(30, 4)), np.full(30, 5.0)])
    X_test = rng.normal(0.0, 5.0, size=(9, 5))
    before = X_train.copy(), X_test.copy()
    z_train, z_test = solved["standardize_split"](X_train, X_test)
    scaler = StandardScaler().fit(X_train)
    np.testing.assert_allclose(z_train, scaler.transform(X_train), atol=1e-12)
    np.testing.assert_allclose(z_test, scaler.transform(X_test), atol=1e-12)
    np.testing.assert_array_equal(X_train, before[0])
    np.testing.assert_array_equal(X_test, before[1])


def _one_hot_by_threshold(y, num_classes):
    return (y > 0).astype(np.int64)


def _one_hot_by_eye(y, num_classes):
    if np.any((y < 0) | (y >= num_classes)):
        raise ValueError("label out of range")
    return np.eye(num_classes)[y]


def _one_hot_inferred(y, num_classes):
    if np.any((y < 0) | (y >= num_classes)):
        raise ValueError("label out of range")
    return np.eye(y.max() + 1, dtype=np.int64)[y]


@pytest.mark.parametrize("fn,expected", [
    (_one_hot_by_threshold, "thresholding (y > 0) is a binarization, not one-hot"),
    (_one_hot_by_eye, "the values are right but the dtype is float"),
    (_one_hot_inferred, "the number of columns was taken from the labels (y.max() + 1)"),
])
def test_numpy_one_hot_mistakes_are_named(exercises, fn, expected):
    message = harness.public_failure(exercises["one_hot via run_one_hot"], fn)
    assert MISTAKE_PREFIX + expected in message, message


def _fit_on_both(X_train, X_test):
    both = np.vstack([X_train, X_test])
    std = both.std(axis=0)
    std[std == 0] = 1.0
    return (X_train - both.mean(axis=0)) / std, (X_test - both.mean(axis=0)) / std


def _standardize_then_min_max(X_train, X_test):
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std[std == 0] = 1.0
    z_train, z_test = (X_train - mean) / std, (X_test - mean) / std
    lo, hi = z_train.min(axis=0), z_train.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (z_train - lo) / span, (z_test - lo) / span


@pytest.mark.parametrize("fn,expected", [
    (_fit_on_both, "leakage: the statistics came from the training and the test split together"),
    (_standardize_then_min_max, "standardized and then min-max normalized again"),
])
def test_numpy_standardize_split_mistakes_are_named(exercises, fn, expected):
    message = harness.public_failure(exercises["standardize_split"], fn)
    assert MISTAKE_PREFIX + expected in message, message


def test_preprocessing_experiment_quotes_what_it_computes(solved):
    """md_preprocessing_experiment: the learner's standardize_split gives the lesson's data, and
    refitting on train + test moves the worst test pixel by about 50 standard deviations."""
    raw, ready = load_digits_split(seed=0, standardize=False), load_digits_split(seed=0)
    z_train, z_test = solved["standardize_split"](raw.X_train, raw.X_test)
    assert np.abs(z_train - ready.X_train).max() < 1e-12
    assert np.abs(z_test - ready.X_test).max() < 1e-12
    both = np.vstack([raw.X_train, raw.X_test])
    std = both.std(axis=0)
    leaked = (raw.X_test - both.mean(axis=0)) / np.where(std > 0, std, 1.0)
    assert round(np.abs(leaked - z_test).max(), -1) == 50
    text = " ".join(harness.markdown(LESSON).split())
    assert "by about 50 standard deviations for the worst pixel" in text
