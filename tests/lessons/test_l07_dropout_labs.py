"""dlopt.grading.drivers.dropout, dlopt.lessons.l07_dropout.dropout_lab and
dlopt.lessons.l07_dropout.dropout_plots, with a dropout written here.

dlopt holds no dropout of its own: these tests bring one (``dropout_forward`` and
``dropout_backward`` below, the lesson's interface), plus broken variants.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlopt.grading.drivers.dropout import (
    UnusableOutput,
    dropout_statistics,
    seeded_dropout,
    statistics_input,
)
from dlopt.kit import plotting
from dlopt.kit.data import load_digits_split
from dlopt.lessons.l07_dropout import dropout_lab, dropout_plots


def dropout_forward(x, p, *, train=True, rng=None):
    if not 0.0 <= p <= 1.0:
        raise ValueError("p must be in [0, 1]")
    if not train:
        return x, (None, p)
    rng = np.random.default_rng() if rng is None else rng
    keep = rng.random(x.shape) >= p
    return (x * keep / (1.0 - p) if p < 1 else np.zeros_like(x)), (keep, p)


def dropout_backward(dout, cache):
    keep, p = cache
    if keep is None:
        return dout
    return dout * keep / (1.0 - p) if p < 1 else np.zeros_like(dout)


def stub_forward(x, p, *, train=True, rng=None):
    raise NotImplementedError("replace this line with your code")


def stub_backward(dout, cache):
    raise NotImplementedError("replace this line with your code")


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


@pytest.fixture(scope="module")
def tiny_sweep(digits):
    return dropout_lab.overfitting_sweep(dropout_forward, dropout_backward, digits,
                                         [0.0, 0.5], per_class=5, hidden=(16,), steps=6,
                                         eval_every=3)


# --- dropout_checks ------------------------------------------------------------------------------
def test_statistics_input_has_no_zeros_and_is_fresh_each_time():
    x = statistics_input(1000, seed=3)
    assert x.shape == (2, 500) and x.flags.writeable
    assert np.all((np.abs(x) >= 0.5) & (np.abs(x) <= 2.0)) and (x < 0).any() and (x > 0).any()
    x[0, 0] = 99.0
    assert statistics_input(1000, seed=3)[0, 0] != 99.0
    assert statistics_input(7, seed=0).shape == (1, 7)


def test_statistics_of_a_correct_layer_are_exact():
    stats = dropout_statistics(dropout_forward, 0.3, seed=1)
    assert list(stats) == sorted(stats)
    assert stats["fraction of zeros"] == 0.3 and stats["mean of out / x"] == 1.0
    assert stats["scale of the nonzero entries"] == pytest.approx(1 / 0.7, rel=1e-9)
    assert stats["every nonzero entry has that scale"] and stats["x unchanged"]
    assert not stats["out == x everywhere"]
    assert dropout_statistics(dropout_forward, 0.3, train=False) == {
        "fraction of zeros": 0.0, "mean of out / x": 1.0, "scale of the nonzero entries": 1.0,
        "every nonzero entry has that scale": True, "out == x everywhere": True,
        "x unchanged": True}
    everything = dropout_statistics(dropout_forward, 1.0)
    assert everything["fraction of zeros"] == 1.0 and everything["mean of out / x"] == 0.0
    assert everything["scale of the nonzero entries"] is None


def test_statistics_show_the_numbers_of_a_wrong_layer():
    def unscaled(x, p, *, train=True, rng=None):
        return x * (rng.random(x.shape) >= p), None

    stats = dropout_statistics(unscaled, 0.4, seed=2)
    assert stats["fraction of zeros"] == 0.4
    assert stats["mean of out / x"] == pytest.approx(0.6, abs=0.01)  # reported as measured
    assert stats["scale of the nonzero entries"] == 1.0


def test_statistics_see_writes_into_x():
    def in_place(x, p, *, train=True, rng=None):
        x *= (rng.random(x.shape) >= p) / (1 - p)
        return x, None

    assert dropout_statistics(in_place, 0.5)["x unchanged"] is False


@pytest.mark.parametrize("result,match", [
    (lambda x: x, "must return a pair"),
    (lambda x: (x.ravel(), None), "shape"),
    (lambda x: (list(x), None), "type list"),
    (lambda x: (x * np.nan, None), "nan or inf"),
])
def test_unusable_outputs_raise_with_a_reason(result, match):
    def forward(x, p, *, train=True, rng=None):
        return result(x)

    with pytest.raises(UnusableOutput, match=match):
        dropout_statistics(forward, 0.5, n=1000)


def test_errors_of_the_forward_pass_through():
    with pytest.raises(ValueError):
        dropout_statistics(dropout_forward, 1.5)


def test_seeded_dropout_lays_out_out_and_cache():
    x = np.arange(1.0, 7.0).reshape(2, 3)
    result = seeded_dropout(dropout_forward, x, 0.5, seed=4)
    keep = np.random.default_rng(4).random((2, 3)) >= 0.5
    np.testing.assert_array_equal(result["out"], x * keep / 0.5)
    np.testing.assert_array_equal(result["cache mask"], keep)
    assert result["cache holds a mask"] is True and result["cache p"] == 0.5
    assert list(result) == sorted(result)
    at_eval = seeded_dropout(dropout_forward, x, 0.5, train=False)
    assert at_eval["cache holds a mask"] is False and at_eval["cache mask"].shape == (0,)

    def no_cache(x, p, *, train=True, rng=None):
        return x, None

    with pytest.raises(UnusableOutput, match="pair \\(mask, p\\)"):
        seeded_dropout(no_cache, x, 0.5)


# --- dropout_lab -------------------------------------------------------------------------------
def test_problem_with_dropout_names_what_to_implement():
    assert dropout_lab.problem_with_dropout(dropout_forward, dropout_backward) is None
    assert dropout_lab.problem_with_dropout(stub_forward, dropout_backward) == \
        "implement `stub_forward` first"
    assert dropout_lab.problem_with_dropout(dropout_forward, stub_backward) == \
        "implement `stub_backward` first"
    assert dropout_lab.problem_with_dropout(dropout_forward) is None

    def broken(x, p, *, train=True, rng=None):
        raise KeyError("oops")

    assert "raised KeyError" in dropout_lab.problem_with_dropout(broken)
    assert "must return (out, cache)" in dropout_lab.problem_with_dropout(
        lambda x, p, *, train=True, rng=None: x)
    assert "dx of dout's shape" in dropout_lab.problem_with_dropout(
        dropout_forward, lambda dout, cache: dout.sum())


def test_expectation_error_converges_for_inverted_dropout_only():
    result = dropout_lab.expectation_error(dropout_forward, np.array([1.0, -2.0, 0.5]), 0.5,
                                           n_draws=4000, seed=1)
    assert result.draws.shape == result.inverted.shape == (4000,)
    assert result.inverted[-1] < 4 * result.predicted[-1]
    assert result.unscaled[-1] == pytest.approx(0.5, abs=0.05)


def test_numpy_dropout_backpropagates_through_the_forward_mask():
    calls = []

    def recording_forward(x, p, *, train=True, rng=None):
        out, cache = dropout_forward(x, p, train=train, rng=rng)
        calls.append(cache[0])
        return out, cache

    dropout = dropout_lab.numpy_dropout(recording_forward, dropout_backward, seed=3)
    t = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 6, dtype=torch.float64)
    dropout(t, 0.25, True).backward(g)
    np.testing.assert_allclose(t.grad.numpy(), g.numpy() * calls[0] / 0.75, rtol=1e-15)
    assert dropout.__name__ == "recording_forward"
    t.grad = None
    dropout(t, 0.25, False).backward(g)
    np.testing.assert_array_equal(t.grad.numpy(), g.numpy())


def test_numpy_dropout_reports_a_wrong_shape():
    dropout = dropout_lab.numpy_dropout(
        lambda x, p, *, train=True, rng=None: (x.ravel(), None), dropout_backward)
    with pytest.raises(ValueError, match="returned out of shape"):
        dropout(torch.zeros(2, 3, dtype=torch.float64), 0.5, True)


def test_training_is_reproducible_and_restores_torch_threads(digits):
    threads = torch.get_num_threads()
    kwargs = dict(p=0.5, hidden=(8,), steps=4, eval_every=2, seed=5)
    X, y = digits.X_train[:40], digits.y_train[:40]
    a = dropout_lab.train_with_dropout(dropout_forward, dropout_backward, X, y, digits.X_test,
                              digits.y_test, **kwargs)
    b = dropout_lab.train_with_dropout(dropout_forward, dropout_backward, X, y, digits.X_test,
                              digits.y_test, batch_size=16, **kwargs)
    assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(a.steps, [0, 2, 4])
    assert a.train_loss.shape == a.val_accuracy.shape == (3,)
    again = dropout_lab.train_with_dropout(dropout_forward, dropout_backward, X, y, digits.X_test,
                                  digits.y_test, **kwargs)
    np.testing.assert_array_equal(again.val_loss, a.val_loss)
    assert not np.array_equal(b.val_loss, a.val_loss)
    assert a.logits(digits.X_test[:3]).shape == (3, 10)
    assert a.gap == pytest.approx(a.train_accuracy[-1] - a.val_accuracy[-1])


def test_ensemble_of_one_hidden_layer_tends_to_the_eval_mode_network(digits):
    results = dropout_lab.ensemble_experiment(
        dropout_forward, dropout_backward, digits, p=0.5,
        architectures={"one": (32,)}, n_samples=60, steps=20)
    result = results["one"]
    assert result.sizes.shape == result.geometric_gap.shape == (60,)
    assert result.geometric_gap[-1] < result.geometric_gap[0] / 3
    assert 0.0 <= result.agreement[-1] <= 1.0 and 0.0 < result.eval_accuracy <= 1.0
    assert result.single_accuracy.shape == (60,)


def test_digits_subset_is_stratified(digits):
    X, y = dropout_lab.digits_subset(digits.X_train, digits.y_train, 4, seed=2)
    assert X.shape == (40, 64) and np.all(np.bincount(y) == 4)


def test_overfitting_sweep_runs_each_p(tiny_sweep):
    np.testing.assert_array_equal(tiny_sweep.ps, [0.0, 0.5])
    assert tiny_sweep.n_train == 50 and tiny_sweep.label_noise == 0.2
    assert tiny_sweep.final("val_accuracy").shape == tiny_sweep.gaps.shape == (2,)
    assert [run.p for run in tiny_sweep.runs] == [0.0, 0.5]


def test_experiments_say_what_to_implement(digits):
    from dlopt.kit import learner

    result, message = learner.attempt(dropout_lab.train_with_dropout, dropout_forward,
                                      stub_backward, digits.X_train[:10], digits.y_train[:10],
                                      digits.X_test, digits.y_test, p=0.5, steps=1)
    assert result is None and message == "implement `stub_backward` first"


# --- dropout_plots -------------------------------------------------------------------------------
def test_plots_draw_their_data(digits, tiny_sweep):
    fig, axes = plotting.new_figure(2, 3)
    expectation = dropout_lab.expectation_error(dropout_forward, np.array([1.0, 2.0]), 0.5,
                                                n_draws=100)
    dropout_plots.plot_expectation(axes[0, 0], expectation)
    assert len(axes[0, 0].lines) == 3
    ensembles = dropout_lab.ensemble_experiment(dropout_forward, dropout_backward, digits,
                                                architectures={"a": (8,), "b": (8, 8)},
                                                n_samples=5, steps=2)
    dropout_plots.plot_ensemble_accuracy(axes[0, 1], ensembles["a"])
    dropout_plots.plot_ensemble_gaps(axes[0, 2], ensembles)
    assert len(axes[0, 2].lines) == 5
    dropout_plots.plot_learning_curves(axes[1, 0], tiny_sweep.runs[1],
                                       baseline=tiny_sweep.runs[0], label_noise=0.2)
    assert len(axes[1, 0].lines) == 5
    dropout_plots.plot_learning_curves(axes[1, 1], tiny_sweep.runs[1], metric="loss")
    dropout_plots.plot_final_vs_p(axes[1, 2], tiny_sweep, selected=0.5)
    with pytest.raises(ValueError, match="metric"):
        dropout_plots.plot_learning_curves(axes[1, 1], tiny_sweep.runs[1], metric="gap")
    plotting.figure_png(fig)


def test_overfitting_explorer_redraws_on_a_new_p(tiny_sweep):
    explorer = dropout_plots.OverfittingExplorer(tiny_sweep, p=0.0)
    assert explorer.redraw_count == 1 and explorer.messages == []
    before = explorer.figure.axes[0].lines[0].get_ydata().copy()
    explorer.p.value = 0.5
    assert explorer.redraw_count == 2
    after = explorer.figure.axes[0].lines[-2].get_ydata()  # training curve of p = 0.5
    assert not np.array_equal(before, after)
    explorer.metric.value = "loss"
    assert explorer.redraw_count == 3 and explorer.figure.axes[0].get_yscale() == "log"
    assert "image/png" in explorer._repr_mimebundle_()


def test_overfitting_explorer_shows_why_there_is_no_sweep():
    explorer = dropout_plots.OverfittingExplorer(None, "implement `dropout_backward` first")
    assert explorer.messages == ["implement `dropout_backward` first"]
    bundle = explorer._repr_mimebundle_()
    assert bundle["text/plain"] == "implement `dropout_backward` first"
    assert "image/png" in bundle
