"""Lesson 01's experiment modules and the kit they use: learner, torch_bridge, gradcheck,
vanishing, dead_relu, data, plotting.

Activations and derivatives come from torch (dlopt_instructor.oracles), never from a formula
written here, so these tests contain no answer to an exercise. Stubs that raise
NotImplementedError stand in for a learner's unfinished functions.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlopt.kit import learner, plotting
from dlopt.kit.data import DigitsSplit, load_digits_split
from dlopt.kit.objectives import rosenbrock, sum_of_sines, wavy_bowl
from dlopt.kit.torch_bridge import numpy_activation
from dlopt.lessons.l01_activations import dead_relu, gradcheck, vanishing
from dlopt_instructor.oracles import torch_derivative, torch_function


def _pair(fn):
    return torch_function(fn), torch_derivative(fn)


SIGMOID, TANH, RELU = _pair(torch.sigmoid), _pair(torch.tanh), _pair(torch.relu)


def relu(x):
    raise NotImplementedError("replace this line with your code")


def relu_grad(x):
    raise NotImplementedError("replace this line with your code")


def numerical_gradient(f, x, h=1e-5):
    raise NotImplementedError("replace this line with your code")


def _central(f, x, h=1e-5):
    """A test-only numerical gradient (vectorized over unit vectors)."""
    x = np.asarray(x, dtype=np.float64)
    basis = np.eye(x.size).reshape((x.size,) + x.shape)
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in basis]).reshape(x.shape)


@pytest.fixture(scope="module")
def digits() -> DigitsSplit:
    return load_digits_split(seed=0)


# --- safe ------------------------------------------------------------------------------------
def test_problem_with_names_the_unimplemented_function():
    assert learner.problem_with(relu) == "implement `relu` first"
    assert learner.problem_with(TANH[0]) is None
    assert learner.problem_with(functools.partial(relu)) == "implement `relu` first"


def test_problem_with_describes_other_failures():
    assert learner.problem_with(lambda x: x.sum()).startswith("`<lambda>` returned shape ()")

    def broken(x):
        raise ValueError("oops")

    assert learner.problem_with(broken) == "`broken` raised ValueError: oops"


def test_attempt_names_the_innermost_stub():
    value, message = learner.attempt(lambda: 3)
    assert (value, message) == (3, None)
    value, message = learner.attempt(gradcheck.step_size_errors, numerical_gradient, sum_of_sines,
                                  np.zeros(2), [1e-5])
    assert value is None and message == "implement `numerical_gradient` first"
    with pytest.raises(ZeroDivisionError):  # only NotImplementedError becomes a message
        learner.attempt(lambda: 1 / 0)


def test_run_each_skips_unimplemented_entries_and_keeps_order():
    results, messages = learner.run_each(
        {"tanh": TANH, "relu": (relu, relu_grad), "sigmoid": SIGMOID},
        lambda f, f_grad: float(f_grad(np.zeros(1))[0]))
    assert list(results) == ["tanh", "sigmoid"]
    assert results == {"tanh": 1.0, "sigmoid": 0.25}
    assert messages == ["relu: implement `relu` first"]


# --- torch_utils -----------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [torch.sigmoid, torch.tanh, F.gelu], ids=["sigmoid", "tanh", "gelu"])
def test_numpy_activation_matches_torch_forward_and_backward(fn):
    act = numpy_activation(*_pair(fn))
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    W = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = x.clone().requires_grad_()
    theirs = x.clone().requires_grad_()
    (act(ours) @ W).square().sum().backward()
    (fn(theirs) @ W).square().sum().backward()
    torch.testing.assert_close(act(x), fn(x))
    torch.testing.assert_close(ours.grad, theirs.grad)


def test_numpy_activation_uses_the_learners_derivative():
    # a deliberately wrong derivative must show up in the gradient: torch does not replace it
    act = numpy_activation(torch_function(torch.tanh), lambda x: np.full_like(x, 2.0))
    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    act(t).sum().backward()
    assert t.grad.tolist() == [2.0, 2.0, 2.0]


def test_numpy_activation_survives_functions_that_write_into_their_input():
    def clobbering_relu(x):
        x[x < 0] = 0.0
        return x

    act = numpy_activation(clobbering_relu, RELU[1])
    t = torch.tensor([-1.0, 2.0], dtype=torch.float64, requires_grad=True)
    act(t).sum().backward()
    assert t.tolist() == [-1.0, 2.0] and t.grad.tolist() == [0.0, 1.0]


def test_numpy_activation_refuses_a_shape_change():
    act = numpy_activation(lambda x: x.sum(), RELU[1])
    with pytest.raises(ValueError, match="returned out of shape"):
        act(torch.zeros(3, dtype=torch.float64))


def test_numpy_activation_lets_not_implemented_through_backward():
    act = numpy_activation(RELU[0], relu_grad)
    t = torch.ones(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(NotImplementedError):
        act(t).sum().backward()


# --- gradcheck -------------------------------------------------------------------------------
def test_relative_error():
    assert gradcheck.relative_error(np.ones(3), np.ones(3)) == 0.0
    assert gradcheck.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert gradcheck.relative_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        gradcheck.relative_error(np.ones(2), np.ones(3))


def test_derivative_report_agrees_disagrees_and_waits():
    x = np.linspace(0.1, 3.0, 7) * np.array([1, -1, 1, -1, 1, -1, 1])
    activations = {
        "sigmoid": SIGMOID,
        "tanh": (TANH[0], SIGMOID[1]),  # the wrong derivative
        "relu": (relu, relu_grad),
    }
    report = gradcheck.derivative_report(activations, _central, x)
    lines = report.splitlines()
    assert lines[1].startswith("sigmoid") and lines[1].endswith("agrees")
    assert lines[2].startswith("tanh") and "DISAGREES" in lines[2]
    assert lines[3] == "relu: implement `relu` first"
    errors, _ = gradcheck.derivative_errors({"sigmoid": SIGMOID}, _central, x)
    assert errors["sigmoid"] < 1e-9


def test_derivative_report_waits_for_numerical_gradient():
    report = gradcheck.derivative_report({"tanh": TANH}, numerical_gradient, np.ones(3))
    assert report == "implement `numerical_gradient` first"


def test_step_size_errors_form_a_v():
    hs = np.logspace(-12, -1, 12)
    errors = gradcheck.step_size_errors(_central, sum_of_sines, np.array([0.3, 1.0, 2.5]), hs)
    best = hs[np.argmin(errors)]
    assert 1e-7 <= best <= 1e-3
    assert errors.min() < 1e-9
    assert errors[0] > 100 * errors.min() and errors[-1] > 100 * errors.min()


def test_step_size_errors_do_not_pass_the_callers_array_for_mutation():
    x = np.array([0.5, -1.0])
    gradcheck.step_size_errors(_central, wavy_bowl, x, [1e-5])
    gradcheck.step_size_errors(_central, rosenbrock, x, [1e-5])
    assert x.tolist() == [0.5, -1.0]


# --- vanishing -------------------------------------------------------------------------------
def test_sigmoid_gradients_vanish_and_tanh_and_relu_do_not():
    norms = {name: vanishing.layer_gradient_norms(*pair, depth=20, width=64)
             for name, pair in [("sigmoid", SIGMOID), ("tanh", TANH), ("relu", RELU)]}
    assert all(n.shape == (20,) for n in norms.values())
    assert norms["sigmoid"][0] / norms["sigmoid"][-1] < 1e-9
    assert np.all(np.diff(np.log(norms["sigmoid"])) > 0)  # grows from input to output
    assert 0.3 < norms["tanh"][0] / norms["tanh"][-1] < 3
    assert 0.3 < norms["relu"][0] / norms["relu"][-1] < 3


def test_relu_level_shrinks_with_depth_under_xavier_but_not_he():
    def level(depth, init):
        return np.mean(vanishing.layer_gradient_norms(*RELU, depth=depth, init=init))

    assert level(20, "xavier") < level(10, "xavier") / 10  # about sqrt(2) per layer
    assert 0.3 < level(20, "he") / level(10, "he") < 3


def test_layer_gradient_norms_are_reproducible_and_validated():
    a = vanishing.layer_gradient_norms(*TANH, depth=3, width=8, seed=5)
    b = vanishing.layer_gradient_norms(*TANH, depth=3, width=8, seed=5)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unknown init"):
        vanishing.layer_gradient_norms(*TANH, depth=3, init="lecun")
    with pytest.raises(ValueError, match="positive"):
        vanishing.layer_gradient_norms(*TANH, depth=0)


def test_compare_activations_reports_missing_ones():
    norms, messages = vanishing.compare_activations(
        {"tanh": TANH, "relu": (RELU[0], relu_grad)}, depth=4, width=8)
    assert list(norms) == ["tanh"] and norms["tanh"].shape == (4,)
    assert messages == ["relu: implement `relu_grad` first"]


def test_init_weight_uses_fan_in_for_he_and_both_fans_for_xavier():
    gen = torch.Generator().manual_seed(0)
    he = vanishing.init_weight("he", 200, 3000, gen)
    xavier = vanishing.init_weight("xavier", 200, 3000, gen)
    assert he.shape == xavier.shape == (200, 3000) and he.dtype == torch.float64
    assert he.std().item() == pytest.approx(0.1, rel=0.02)  # sqrt(2 / 200)
    assert xavier.std().item() == pytest.approx(np.sqrt(2 / 3200), rel=0.02)
    with pytest.raises(ValueError, match="unknown init"):
        vanishing.init_weight("lecun", 2, 2)


# --- dead_relu -------------------------------------------------------------------------------
def test_dead_fraction_counts_columns_that_are_zero_everywhere():
    hidden = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    assert dead_relu.dead_fraction(hidden) == 0.5
    with pytest.raises(ValueError):
        dead_relu.dead_fraction(np.zeros(3))


def test_dead_fraction_rises_as_the_bias_shifts_down(digits):
    shifts = [0.0, -2.0, -4.0, -6.0, -10.0]
    fraction = dead_relu.dead_fraction_vs_bias(RELU[0], digits.X_train, shifts, width=128)
    assert fraction.shape == (5,)
    assert fraction[0] == 0.0 and fraction[1] == 0.0
    assert np.all(np.diff(fraction) >= 0)
    assert fraction[-1] > 0.5


def test_large_learning_rates_kill_relus(digits):
    sweep = dead_relu.dead_fraction_vs_lr(*RELU, digits, [0.1, 10.0], steps=50)
    assert sweep.lrs.tolist() == [0.1, 10.0]
    assert sweep.dead_per_layer.shape == (2, 2)
    assert sweep.dead_fraction[0] == 0.0 and sweep.dead_fraction[1] > 0.3
    assert sweep.dead_per_layer[1, 1] > 0.8  # the layer fed by ReLUs dies
    assert sweep.train_loss[0] < 1.0 < sweep.train_loss[1]
    assert sweep.test_accuracy[0] > 0.8 and sweep.test_accuracy[1] < 0.3


def test_learning_rate_sweep_runs_share_initial_weights(digits):
    a = dead_relu.dead_fraction_vs_lr(*RELU, digits, [0.0], steps=3)
    b = dead_relu.dead_fraction_vs_lr(*RELU, digits, [0.0, 0.0], steps=3)
    assert a.train_loss[0] == b.train_loss[0] == b.train_loss[1]


def test_learning_rate_sweep_waits_for_relu_grad(digits):
    value, message = learner.attempt(dead_relu.dead_fraction_vs_lr, RELU[0], relu_grad, digits,
                                  [0.1], steps=2)
    assert value is None and message == "implement `relu_grad` first"


# --- data ------------------------------------------------------------------------------------
def test_digits_split_is_standardized_reproducible_and_stratified(digits):
    X_train, X_test, y_train, y_test = digits
    assert X_train.shape == (1347, 64) and X_test.shape == (450, 64)
    assert X_train.dtype == np.float64 and y_train.dtype == np.int64
    np.testing.assert_allclose(X_train.mean(axis=0), 0.0, atol=1e-12)
    stds = X_train.std(axis=0)
    assert np.all((np.abs(stds - 1) < 1e-12) | (stds == 0))
    assert set(np.unique(y_test)) == set(range(10))
    assert np.all(np.bincount(y_test) >= 43)  # stratified: about 45 per class
    again = load_digits_split(seed=0)
    np.testing.assert_array_equal(again.X_test, X_test)
    other = load_digits_split(seed=1)
    assert not np.array_equal(other.y_test, y_test)


def test_digits_raw_pixels_and_validation():
    raw = load_digits_split(standardize=False)
    assert raw.X_train.min() == 0.0 and raw.X_train.max() == 16.0
    with pytest.raises(ValueError):
        load_digits_split(test_fraction=1.5)


# --- plotting --------------------------------------------------------------------------------
def test_plotting_functions_draw_on_given_axes(digits):
    fig, axes = plotting.new_figure(2, 3)
    x = np.linspace(-2, 2, 5)
    plotting.plot_curves(axes[0, 0], x, {"tanh": np.tanh(x), "mine": x}, messages=["note"])
    assert len(axes[0, 0].get_lines()) == 2 + 2  # two curves and the two axis lines
    assert axes[0, 0].texts[0].get_text() == "note"
    plotting.plot_layer_norms(axes[0, 1], {"relu": np.array([1.0, 0.1, 0.01])})
    assert axes[0, 1].get_yscale() == "log"
    plotting.plot_dead_fraction(axes[0, 2], x, np.zeros(5), xlabel="b")
    sweep = dead_relu.LRSweep(np.array([0.1, 1.0]), np.array([0.0, 0.5]),
                              np.array([[0.0, 0.0], [0.0, 1.0]]), np.array([0.5, 2.3]),
                              np.array([0.9, 0.1]))
    plotting.plot_lr_sweep(axes[1, 0], axes[1, 1], sweep)
    assert len(axes[1, 0].get_lines()) == 3
    plotting.plot_step_errors(axes[1, 2], np.logspace(-10, -1, 10), np.logspace(-6, -3, 10))
    png = plotting.figure_png(fig)
    assert png.startswith(b"\x89PNG")


def test_color_for_is_fixed():
    assert plotting.color_for("relu") == plotting.color_for("relu")
    assert plotting.color_for("relu") != plotting.color_for("tanh")
    assert plotting.color_for("something else").startswith("tab:")
