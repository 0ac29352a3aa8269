"""Lesson 02's helper modules: backprop_oracles, mistakes, init_lab, init_explorer, mlp_lab.

Gradients come from torch autograd or from a test-only central difference, never from a
formula of an exercise. Stubs raising NotImplementedError stand in for a learner's unfinished
functions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlopt.grading.drivers import init as init_drivers
from dlopt.kit import learner
from dlopt.kit.data import load_digits_split
from dlopt.lessons.l02_losses_backprop import init_lab, mlp_lab
from dlopt.lessons.l02_losses_backprop.init_explorer import InitExplorer
from dlopt.lessons.l02_losses_backprop.mlp_lab import MLP_KEYS
from dlopt_instructor import init as init_oracles
from dlopt_instructor.backprop import (
    MLP_MISTAKES,
    torch_linear_backward,
    torch_linear_forward,
    torch_loss,
    torch_loss_grad,
    torch_mlp_loss_and_grads,
    torch_mlp_mistake,
)
from dlopt_instructor.mistakes import MistakeNotApplicable, where_shapes_allow


def _central(f, x, h=1e-6):
    """A test-only numerical gradient of a scalar function (one entry at a time)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        grad[i] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


def _params(rng, D=4, H=6, C=3):
    return {"W1": rng.normal(size=(D, H)), "b1": rng.normal(size=H),
            "W2": rng.normal(size=(H, C)), "b2": rng.normal(size=C)}


def xavier_normal(fan_in, fan_out, rng):
    raise NotImplementedError("replace this line with your code")


def he_normal(fan_in, fan_out, rng):
    raise NotImplementedError("replace this line with your code")


def mlp_loss_and_grads(params, X, y):
    raise NotImplementedError("replace this line with your code")


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


# --- backprop_oracles --------------------------------------------------------------------------
def test_torch_loss_keeps_torch_conventions():
    assert torch_loss(F.mse_loss)(np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((2, 2))) == 7.5
    assert torch_loss(F.mse_loss)(np.ones(3), np.zeros(3), reduction="sum") == 3.0
    logits, y = np.zeros((4, 5)), np.array([0, 1, 2, 3])  # int labels go in as class indices
    assert torch_loss(F.cross_entropy)(logits, y) == pytest.approx(np.log(5.0))
    grad = torch_loss_grad(F.cross_entropy)(logits, y)
    assert grad.shape == (4, 5) and grad.dtype == np.float64
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-15)
    z = np.array([-1000.0, 1000.0])
    assert torch_loss(F.binary_cross_entropy_with_logits)(z, np.array([1.0, 0.0])) == 1000.0


def test_torch_loss_grad_agrees_with_a_central_difference():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    loss = torch_loss(F.mse_loss)
    np.testing.assert_allclose(torch_loss_grad(F.mse_loss)(pred, target),
                               _central(lambda p: loss(p, target), pred), atol=1e-8)


def test_linear_oracles_agree_with_central_differences():
    rng = np.random.default_rng(1)
    x, W, b, dout = (rng.normal(size=s) for s in ((5, 3), (3, 4), (4,), (5, 4)))
    out, cache = torch_linear_forward(x, W, b)
    assert out.shape == (5, 4) and len(cache) == 3
    for got, given in zip(cache, (x, W, b), strict=True):
        np.testing.assert_array_equal(got, given)
        assert got is not given
    dx, dW, db = torch_linear_backward(dout, cache)

    def loss(x_, W_, b_):
        return float(np.sum(torch_linear_forward(x_, W_, b_)[0] * dout))

    np.testing.assert_allclose(dx, _central(lambda v: loss(v, W, b), x), atol=1e-8)
    np.testing.assert_allclose(dW, _central(lambda v: loss(x, v, b), W), atol=1e-8)
    np.testing.assert_allclose(db, _central(lambda v: loss(x, W, v), b), atol=1e-8)


def test_mlp_oracle_agrees_with_central_differences():
    rng = np.random.default_rng(2)
    params, X, y = _params(rng), rng.normal(size=(5, 4)), np.array([0, 1, 2, 2, 1])
    loss, grads = torch_mlp_loss_and_grads(params, X, y)
    assert isinstance(loss, float) and list(grads) == list(MLP_KEYS)
    for k in MLP_KEYS:
        def f(v, k=k):
            return torch_mlp_loss_and_grads({**params, k: v}, X, y)[0]

        np.testing.assert_allclose(grads[k], _central(f, params[k]), atol=1e-7)


def test_mlp_mistakes_are_what_they_say():
    rng = np.random.default_rng(3)
    params, X, y = _params(rng), rng.normal(size=(6, 4)), np.array([0, 1, 2, 2, 1, 0])
    loss, grads = torch_mlp_loss_and_grads(params, X, y)
    outcomes = {m: torch_mlp_mistake(params, X, y, m) for m in MLP_MISTAKES}
    for k in MLP_KEYS:
        np.testing.assert_allclose(outcomes["sum_not_mean"][1][k], 6 * grads[k])
        per_example = outcomes["bias_grad_not_summed"][1]
        if k.startswith("b"):
            assert per_example[k].shape == (6, params[k].size)
            np.testing.assert_allclose(per_example[k].sum(axis=0), grads[k], atol=1e-14)
    for m in ("no_relu_backward", "relu_gate_on_gradient"):
        assert outcomes[m][0] == loss
        np.testing.assert_allclose(outcomes[m][1]["W2"], grads["W2"])  # above the ReLU: right
        assert not np.allclose(outcomes[m][1]["W1"], grads["W1"])
    assert outcomes["double_softmax"][0] >= np.log(1 + 2 / np.e)  # its floor for 3 classes
    with pytest.raises(ValueError, match="unknown mistake"):
        torch_mlp_mistake(params, X, y, "forgot everything")
    with pytest.raises(ValueError, match="class indices"):
        torch_mlp_loss_and_grads(params, X, y.astype(float))


# --- mistakes ----------------------------------------------------------------------------------
def test_where_shapes_allow_turns_shape_errors_into_not_applicable():
    mistake = where_shapes_allow(lambda a, b: a @ b)
    np.testing.assert_array_equal(mistake(np.eye(2), np.ones(2)), np.ones(2))
    with pytest.raises(MistakeNotApplicable):
        mistake(np.eye(2), np.ones(3))
    with pytest.raises(MistakeNotApplicable):
        where_shapes_allow(lambda: torch.ones(2) @ torch.ones(3))()


# --- init_lab ----------------------------------------------------------------------------------
def test_torch_init_std_reads_torch_nn_init():
    assert init_oracles.torch_init_std("xavier", 3, 5) == pytest.approx(0.5, rel=1e-12)
    assert init_oracles.torch_init_std("he", 8, 100) == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(ValueError, match="unknown init"):
        init_oracles.torch_init_std("lecun", 3, 5)


def test_reference_draws_call_the_generator_once():
    W = init_oracles.torch_xavier_normal(3, 5, np.random.default_rng(7))
    np.testing.assert_allclose(W, np.random.default_rng(7).normal(0.0, 0.5, size=(3, 5)),
                               rtol=1e-14)
    assert init_drivers.draw_with_seed(init_oracles.torch_he_normal, 8, 2, 7).shape == (8, 2)
    assert init_drivers.sample_std(init_oracles.torch_he_normal, 800, 200, 0) == pytest.approx(
        0.05, rel=0.01)


def test_drivers_convert_tensors_and_pass_stubs_on():
    def torch_init(fan_in, fan_out, rng):
        return torch.zeros(fan_in, fan_out)

    W = init_drivers.draw_with_seed(torch_init, 2, 3, 0)
    assert type(W) is np.ndarray and W.shape == (2, 3)
    with pytest.raises(NotImplementedError):
        init_drivers.draw_with_seed(xavier_normal, 2, 3, 0)


def test_activation_stds_show_vanishing_stable_and_exploding_signals():
    kwargs = {"depth": 12, "width": 128, "batch_size": 64}
    small = init_lab.activation_stds(init_lab.fixed_normal(0.01), "relu", **kwargs)
    he = init_lab.activation_stds(init_oracles.torch_he_normal, "relu", **kwargs)
    large = init_lab.activation_stds(init_lab.fixed_normal(1.0), "tanh", **kwargs)
    assert small.std.shape == (12,) and small.last.shape == (64, 128)
    assert small.std[-1] < 1e-10
    assert 0.5 < he.std[-1] / he.std[0] < 2.0
    assert large.std.min() > 0.9  # saturated tanh
    doubled = init_lab.activation_stds(init_oracles.torch_he_normal, "relu", scale=2.0, **kwargs)
    assert doubled.std[-1] > 100 * he.std[-1]


def test_activation_stds_validate_their_inputs():
    with pytest.raises(ValueError, match="unknown activation"):
        init_lab.activation_stds(init_oracles.torch_he_normal, "sigmoid")
    with pytest.raises(ValueError, match="returned shape"):
        init_lab.activation_stds(lambda fi, fo, rng: np.zeros((fo + 1, fi)), "relu", depth=2)


def test_compare_inits_skips_unfinished_initializers():
    inits = {"Xavier": init_oracles.torch_xavier_normal, "He": he_normal}
    stds, messages = init_lab.compare_inits(inits, "tanh", depth=3, width=16)
    assert list(stds) == ["Xavier"] and stds["Xavier"].shape == (3,)
    assert messages == ["He: implement `he_normal` first"]


def test_plots_draw_labelled_lines_and_histograms():
    from dlopt.kit.plotting import new_figure

    fig, (ax, ax_hist) = new_figure(1, 2)
    init_lab.plot_activation_stds(ax, {"He": np.array([1.0, 0.9]), "too small": np.zeros(2)},
                                  messages=["Xavier: implement `xavier_normal` first"])
    assert [line.get_label() for line in ax.get_lines()] == ["He", "too small"]
    assert ax.get_yscale() == "log" and "implement" in ax.texts[0].get_text()
    init_lab.plot_activation_histogram(ax_hist, np.array([[0.0, 1.0], [np.inf, 2.0]]))
    assert sum(p.get_height() for p in ax_hist.patches) == pytest.approx(1.0)


# --- init_explorer -----------------------------------------------------------------------------
INITS = {"too small": init_lab.fixed_normal(0.01), "Xavier": init_oracles.torch_xavier_normal,
         "He": init_oracles.torch_he_normal}


def test_init_explorer_redraws_when_a_control_changes():
    explorer = InitExplorer(INITS, activation="relu", init="He", depth=6, width=32,
                            batch_size=16)
    assert explorer.messages == [] and explorer.redraw_count == 1
    thick = explorer.figure.axes[0].get_lines()[-1]
    before = thick.get_ydata().copy()
    explorer.scale.value = 2.0
    assert explorer.redraw_count == 2
    after = explorer.figure.axes[0].get_lines()[-1].get_ydata()
    assert after[-1] > 10 * before[-1]
    explorer.depth.value = 9
    assert explorer.figure.axes[0].get_lines()[-1].get_xdata()[-1] == 9
    assert bytes(explorer.image.value).startswith(b"\x89PNG")


def test_init_explorer_names_unfinished_initializers():
    explorer = InitExplorer({**INITS, "He": he_normal}, init="He", depth=3, width=8,
                            batch_size=4)
    assert explorer.messages == ["He: implement `he_normal` first"]
    assert "implement `he_normal` first" in explorer._repr_mimebundle_()["text/plain"]
    explorer.init.value = "Xavier"
    assert explorer.messages == ["He: implement `he_normal` first"]
    assert explorer.figure.axes[1].patches  # the chosen initializer's histogram


# --- mlp_lab -----------------------------------------------------------------------------------
def test_init_mlp_params_shapes():
    params = mlp_lab.init_mlp_params(64, 32, 10, seed=0)
    assert {k: v.shape for k, v in params.items()} == {"W1": (64, 32), "b1": (32,),
                                                       "W2": (32, 10), "b2": (10,)}
    assert not params["b1"].any() and not params["b2"].any()
    assert params["W1"].std() == pytest.approx(np.sqrt(2 / 64), rel=0.1)


def test_training_with_autograd_gradients_learns_the_digits(digits):
    history = mlp_lab.train_mlp(torch_mlp_loss_and_grads, digits, epochs=20)
    assert history.train_loss.shape == history.test_accuracy.shape == (20,)
    assert history.test_accuracy[-1] >= 0.95
    assert history.train_loss[-1] < history.train_loss[0] / 10
    assert mlp_lab.mlp_accuracy(history.params, digits.X_test, digits.y_test) == \
        history.test_accuracy[-1]
    again = mlp_lab.train_mlp(torch_mlp_loss_and_grads, digits, epochs=20)
    np.testing.assert_array_equal(again.train_loss, history.train_loss)


def test_training_with_a_wrong_gradient_does_not_learn(digits):
    def upside_down(params, X, y):
        loss, grads = torch_mlp_loss_and_grads(params, X, y)
        return loss, {k: -g for k, g in grads.items()}

    history = mlp_lab.train_mlp(upside_down, digits, epochs=3)
    assert history.test_accuracy[-1] < 0.5


@pytest.mark.parametrize("bad,match", [
    (lambda p, X, y: 1.0, "must return a pair"),
    (lambda p, X, y: (1.0, {"W1": p["W1"]}), "without the key"),
    (lambda p, X, y: (1.0, {k: v.T for k, v in p.items()}), "of shape"),
])
def test_training_explains_malformed_returns(digits, bad, match):
    with pytest.raises(ValueError, match=match):
        mlp_lab.train_mlp(bad, digits, epochs=1)


def test_training_a_stub_names_it(digits):
    history, message = learner.attempt(mlp_lab.train_mlp, mlp_loss_and_grads, digits)
    assert history is None and message == "implement `mlp_loss_and_grads` first"


def test_gradient_check_separates_right_from_wrong_backward_passes():
    rng = np.random.default_rng(4)
    params, X, y = _params(rng), rng.normal(size=(5, 4)), np.array([0, 1, 2, 1, 0])
    right = mlp_lab.mlp_gradient_check(torch_mlp_loss_and_grads, _central, params, X, y)
    assert list(right) == list(MLP_KEYS) and max(right.values()) < 1e-7

    def no_relu(p, X_, y_):
        return torch_mlp_mistake(p, X_, y_, "no_relu_backward")

    wrong = mlp_lab.mlp_gradient_check(no_relu, _central, params, X, y)
    assert wrong["W1"] > 1e-2 and wrong["W2"] < 1e-7


def test_plot_training_draws_loss_and_accuracy(digits):
    from dlopt.kit.plotting import new_figure

    history = mlp_lab.train_mlp(torch_mlp_loss_and_grads, digits, epochs=2)
    fig, (ax_loss, ax_acc) = new_figure(1, 2)
    mlp_lab.plot_training(ax_loss, ax_acc, history, target=0.95)
    np.testing.assert_array_equal(ax_loss.get_lines()[0].get_ydata(), history.train_loss)
    assert [line.get_label() for line in ax_acc.get_lines()] == ["train", "test", "95%"]
