"""Lesson 01 (activations): what this lesson alone states and computes.

The contract every lesson keeps (structure, checks, student copy, notebook runs) is tested in
test_lesson_contract.py. Here: the graded functions are the expected ones, the misconceptions are
stated, the solutions agree with torch on random inputs beyond the scenarios, and the executed
notebook shows its lesson-specific outputs.
"""

from __future__ import annotations

import lesson_harness as harness
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlopt.kit import objectives
from dlopt_instructor.oracles import torch_derivative, torch_function, torch_jvp

LESSON = "01_activations"
GRADED = [
    "numerical_gradient", "sigmoid", "sigmoid_grad", "tanh", "tanh_grad", "relu", "relu_grad",
    "leaky_relu", "leaky_relu_grad", "elu", "elu_grad", "gelu", "gelu_grad", "softmax",
    "softmax_jvp",
]
solved = harness.solved  # a fixture: the solved notebook's namespace, for LESSON


# --- what this lesson states --------------------------------------------------------------------
test_graded_functions_are_the_expected_ones = harness.graded_functions_test(LESSON, GRADED)


def test_misconceptions_are_stated():
    text = harness.markdown(LESSON)
    assert "ReLU's gradient is 1" in text
    assert "np.exp(1000.0)" in text and "saturat" in text
    assert "approximate='tanh'" in text and "approximate='none'" in text


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


# --- the executed notebook ------------------------------------------------------------------------
@pytest.mark.slow
def test_solved_notebook_agrees_with_torch_and_draws_its_explorers():
    nb = harness.executed_solution(LESSON)
    assert "DISAGREES" not in harness.printed_text(nb)
    harness.assert_draws_a_figure(nb, "experiment_activation_explorer",
                                  "experiment_depth_explorer")


def test_dead_lr_text_quotes_what_the_sweep_gives():
    """md_dead_lr: at lr 10 the loss is near ln 10, at lr 30 about 5.5 (not stuck near ln 10);
    both leave about half of the units dead, 97 % of the second layer, and chance accuracy."""
    from dlopt.kit.data import load_digits_split
    from dlopt.lessons.l01_activations import dead_relu

    def relu(x):
        return np.maximum(x, 0.0)

    def relu_grad(x):
        return (x > 0).astype(float)

    digits = load_digits_split(seed=0)
    sweep = dead_relu.dead_fraction_vs_lr(relu, relu_grad, digits, [1.0, 10.0, 30.0],
                                          hidden=(64, 64), steps=50)
    (_, loss_10, loss_30), (_, acc_10, acc_30) = sweep.train_loss, sweep.test_accuracy
    assert abs(loss_10 - np.log(10)) < 0.1 and round(loss_30, 1) == 5.5
    assert round(acc_10, 1) == round(acc_30, 1) == 0.1
    for dead, layers in zip(sweep.dead_fraction[1:], sweep.dead_per_layer[1:], strict=True):
        assert round(dead, 1) == 0.5 and round(layers[1], 2) == 0.97
    text = " ".join(harness.markdown(LESSON).split())
    assert "(97 % of it), and the test accuracy falls to chance, 10 %" in text
    assert "at `lr = 30` it ends even higher, about 5.5" in text


def test_dead_lr_sweep_shows_its_clipping_and_what_the_clip_changes():
    """Issue 14, item 8: the sweep's gradient clipping is a visible knob (CLIP_NORM, passed to the
    sweep), and md_dead_lr's numbers without clipping are what the sweep gives: lr 0.01 learns
    faster (about 1.75 instead of 2.13), lr 3 ends in nan, lr 30 far above."""
    from dlopt.kit.data import load_digits_split
    from dlopt.lessons.l01_activations import dead_relu

    source = harness.cell_sources(LESSON)["experiment_dead_lr"]
    assert "CLIP_NORM = 1.0" in source and "clip_norm=CLIP_NORM" in source
    assert "clip_norm=None" in source  # the unclipped comparison line

    def relu(x):
        return np.maximum(x, 0.0)

    def relu_grad(x):
        return (x > 0).astype(float)

    data = load_digits_split(seed=0)
    lrs = [0.01, 3.0, 30.0]
    with np.errstate(all="ignore"):
        clipped = dead_relu.dead_fraction_vs_lr(relu, relu_grad, data, lrs, clip_norm=1.0)
        unclipped = dead_relu.dead_fraction_vs_lr(relu, relu_grad, data, lrs, clip_norm=None)
    assert round(clipped.train_loss[0], 2) == 2.13 and round(unclipped.train_loss[0], 2) == 1.75
    assert np.isnan(unclipped.train_loss[1]) and unclipped.train_loss[2] > 1e6
    text = " ".join(harness.markdown(LESSON).split())
    assert "a training loss of about 2.13 instead of 1.75 after 50 steps" in text
    assert "the loss is `nan` at `lr = 3` and astronomically large at `lr = 30`" in text
    assert "`CLIP_NORM` = 1" in text and "`clip_grad_norm`" in text
