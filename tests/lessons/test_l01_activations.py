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
    nb, _ = harness.executed_solution(LESSON)
    assert "DISAGREES" not in harness.printed_text(nb)
    harness.assert_draws_a_figure(nb, "experiment_activation_explorer",
                                  "experiment_depth_explorer")
