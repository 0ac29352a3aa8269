"""Lesson 05's experiment modules: ridge, sparsity, weight_decay, overfit_lab.

The learner's functions are stood in for by torch and scikit-learn (torch.optim.SGD's weight
decay, torch's softshrink and autograd, scikit-learn's Ridge and KFold), never by a formula
written here, so these tests contain no answer to an exercise. Stubs that raise
NotImplementedError stand in for a learner's unfinished functions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import KFold

from dlopt.kit import learner, plotting
from dlopt.kit.torch_bridge import torch_update_rule
from dlopt.lessons.l05_regularization import overfit_lab, ridge, sparsity, weight_decay
from dlopt_instructor.oracles import torch_derivative

_SGD = torch_update_rule("SGD")


# --- stand-ins for the learner's functions, from torch and scikit-learn --------------------------
def sgd_l2_step(w, dw, state, *, lr, lam):
    return _SGD(w, dw, state, lr=lr, weight_decay=lam)


def proximal_l1_step(w, dw, *, lr, lam):
    return F.softshrink(torch.as_tensor(w - lr * dw), lr * lam).numpy()


def soft_threshold(w, t):
    return F.softshrink(torch.as_tensor(np.asarray(w, dtype=np.float64)), t).numpy()


l1_subgradient = torch_derivative(lambda t, lam: lam * torch.abs(t))
l2_grad = torch_derivative(lambda t, lam: lam / 2 * t**2)


def choose_lambda_by_cv(X, y, lams, k, fit):
    errors = [np.mean([mean_squared_error(y[va], Ridge(alpha=lam * len(tr), fit_intercept=False)
                                          .fit(X[tr], y[tr]).predict(X[va]))
                       for tr, va in KFold(n_splits=k).split(X)]) for lam in lams]
    return float(lams[int(np.argmin(errors))]), np.array(errors)


def simple_stopping(val_losses, patience):
    """Not early stopping: the global minimum and the last epoch (enough to draw the marks)."""
    return int(np.argmin(val_losses)), len(val_losses) - 1


def _stub(name):
    def stub(*args, **kwargs):
        raise NotImplementedError("replace this line with your code")

    stub.__code__ = stub.__code__.replace(co_name=name)  # the name learner.attempt reports
    stub.__name__ = name
    return stub


# --- ridge ---------------------------------------------------------------------------------------
def test_ridge_fit_is_sklearn_ridge_with_alpha_n_lam():
    X, y, *_ = ridge.make_regression(30, 5, seed=1)
    for lam in (0.0, 0.01, 1.0):
        expected = Ridge(alpha=30 * lam, fit_intercept=False).fit(X, y).coef_
        np.testing.assert_allclose(ridge.ridge_fit(X, y, lam), expected, rtol=1e-9, atol=1e-12)


def test_ridge_fit_validates_its_input():
    with pytest.raises(ValueError, match="lam"):
        ridge.ridge_fit(np.eye(3), np.ones(3), -1.0)
    with pytest.raises(ValueError, match="shape"):
        ridge.ridge_fit(np.eye(3), np.ones(4), 1.0)


def test_make_regression_shapes_and_reproducibility():
    X, y, w, Xt, yt = ridge.make_regression(20, 4, n_test=7, seed=3)
    assert X.shape == (20, 4) and y.shape == (20,) and w.shape == (4,)
    assert Xt.shape == (7, 4) and yt.shape == (7,)
    np.testing.assert_array_equal(X, ridge.make_regression(20, 4, n_test=7, seed=3)[0])


def test_lambda_sweep_and_its_plot():
    X, y, _, Xt, yt = ridge.make_regression(60, 40, noise=1.0, n_test=500, seed=0)
    lams = np.logspace(-3, 2, 11)
    sweep = ridge.lambda_sweep(choose_lambda_by_cv, X, y, Xt, yt, lams, k=5)
    assert np.all(np.diff(sweep.train_error) > 0), "the training error grows with lambda"
    assert sweep.best_lam == lams[int(np.argmin(sweep.cv_error))]
    assert sweep.test_error[list(lams).index(sweep.best_lam)] < sweep.test_error[0]
    fig, ax = plotting.new_figure()
    ridge.plot_cv_sweep(ax, sweep)
    assert len([ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]) == 4


def test_lambda_sweep_names_the_missing_function():
    X, y, _, Xt, yt = ridge.make_regression(20, 3, n_test=5)
    _, message = learner.attempt(ridge.lambda_sweep, _stub("choose_lambda_by_cv"), X, y, Xt, yt,
                              [0.1, 1.0])
    assert message == "implement `choose_lambda_by_cv` first"


# --- sparsity ------------------------------------------------------------------------------------
def test_sparse_problem_is_sparse_and_consistent():
    p = sparsity.make_sparse_regression(n=50, d=20, n_nonzero=4, seed=2)
    assert np.sum(p.w_true != 0) == 4 and np.all(np.abs(p.w_true[p.w_true != 0]) >= 1)
    np.testing.assert_allclose(p.H, p.X.T @ p.X / 50)
    np.testing.assert_allclose(p.b, p.X.T @ p.y / 50)


def test_proximal_steps_give_exact_zeros_and_the_lasso_solution():
    p = sparsity.make_sparse_regression()
    result = sparsity.compare_sparsity(proximal_l1_step, l1_subgradient, sgd_l2_step, p, lam=0.2)
    assert result.messages == []
    prox = result.weights["L1, proximal step"]
    np.testing.assert_allclose(prox, sparsity.lasso_solution(p, 0.2), atol=1e-10)
    assert np.sum(prox == 0) == 35 and np.array_equal(prox != 0, p.w_true != 0)
    assert result.zeros["L1, subgradient"].max() == 0
    assert result.zeros["L2"].max() == 0
    assert result.zeros["L1, proximal step"].shape == (501,)
    assert result.lr == pytest.approx(1 / np.linalg.eigvalsh(p.H)[-1])


def test_compare_sparsity_survives_stubs():
    p = sparsity.make_sparse_regression(n=30, d=10)
    result = sparsity.compare_sparsity(_stub("proximal_l1_step"), l1_subgradient,
                                       _stub("sgd_l2_step"), p, lam=0.1, steps=5)
    assert result.weights == {}
    assert result.messages == [
        "L1, proximal step: implement `proximal_l1_step` first",
        "L1, subgradient: implement `sgd_l2_step` first",
        "L2: implement `sgd_l2_step` first",
    ]
    fig, axes = plotting.new_figure(1, 2)
    sparsity.plot_coefficients(axes[0], p.w_true, result.weights, messages=result.messages)
    sparsity.plot_zero_counts(axes[1], result.zeros, d=10)
    assert any("implement" in t.get_text() for t in axes[0].texts)


def test_shrinkage_curves():
    u = np.linspace(-3, 3, 61)
    curves = sparsity.shrinkage_curves(soft_threshold, u, 1.0)
    assert set(curves) == {"no penalty", "L2", "L1"}
    assert np.sum(curves["L2"] == 0) == 1 and np.sum(curves["L1"] == 0) == 21
    assert set(sparsity.shrinkage_curves(_stub("soft_threshold"), u, 1.0)) == {"no penalty", "L2"}
    fig, ax = plotting.new_figure()
    sparsity.plot_shrinkage(ax, u, curves, 1.0)
    assert len(ax.get_lines()) == 4  # three curves and the zero line


# --- weight decay --------------------------------------------------------------------------------
H = np.diag([10.0, 1.0, 0.1])
B = H @ np.ones(3)


def test_sgd_with_l2_is_torch_sgd_weight_decay():
    runs = weight_decay.compare_sgd(sgd_l2_step, np.zeros(3), H, B, lr=0.1, lam=0.5, steps=50)
    ours, torch_sgd = runs.trajectories.values()
    assert ours.shape == (51, 3)
    np.testing.assert_array_equal(ours, torch_sgd)


def test_adam_with_l2_is_torch_adam_weight_decay_and_not_adamw():
    runs = weight_decay.compare_adam(l2_grad, np.zeros(3), H, B, lr=0.05, lam=0.5, steps=500)
    t = runs.trajectories
    assert runs.messages == []
    np.testing.assert_array_equal(t["Adam + your l2_grad"], t["torch Adam(weight_decay=lam)"])
    ridge_point = weight_decay.ridge_minimizer(H, B, 0.5)
    np.testing.assert_allclose(t["torch Adam(weight_decay=lam)"][-1], ridge_point, atol=1e-3)
    adamw = t["torch AdamW(weight_decay=lam)"][-1]
    assert np.max(np.abs(adamw - ridge_point)) > 0.5
    assert np.ptp(adamw) < 0.01, "AdamW shrinks every coordinate alike here"


def test_weight_decay_comparisons_survive_stubs_and_plot():
    sgd = weight_decay.compare_sgd(_stub("sgd_l2_step"), np.zeros(3), H, B, lr=0.1, lam=0.5,
                                   steps=3)
    adam = weight_decay.compare_adam(_stub("l2_grad"), np.zeros(3), H, B, lr=0.1, lam=0.5,
                                     steps=3)
    assert sgd.messages == ["implement `sgd_l2_step` first"]
    assert adam.messages == ["implement `l2_grad` first"]
    assert list(sgd.trajectories) == ["torch SGD(weight_decay=lam)"]
    assert len(adam.trajectories) == 2
    fig, axes = plotting.new_figure(1, 2)
    weight_decay.plot_final_weights(axes[0], {k: v[-1] for k, v in adam.trajectories.items()})
    weight_decay.plot_gaps(axes[1], {"a vs b": 0.0, "c vs d": 0.5})
    assert len(axes[0].patches) == 6 and len(axes[1].patches) == 2
    assert [t.get_text() for t in axes[1].texts] == ["exactly 0", "5.0e-01"]


# --- overfitting lab -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return overfit_lab.make_overfit_data(n_train=60, n_val=50, label_noise=0.2, seed=0)


def test_overfit_data(data):
    full = overfit_lab.make_overfit_data()
    assert full.X_train.shape == (200, 64) and full.X_val.shape == (200, 64)
    assert full.X_test.shape == (250, 64) and full.n_flipped == 37
    clean = overfit_lab.make_overfit_data(label_noise=0.0)
    assert np.sum(clean.y_train != full.y_train) == full.n_flipped
    assert data.X_train.shape == (60, 64) and data.y_val.shape == (50,)
    with pytest.raises(ValueError):
        overfit_lab.make_overfit_data(n_val=450)


def test_training_is_reproducible_and_restores_torch_threads(data):
    threads = torch.get_num_threads()
    a = overfit_lab.train_with_penalty(sgd_l2_step, data, penalty="L2", lam=0.01, epochs=20)
    b = overfit_lab.train_with_penalty(sgd_l2_step, data, penalty="L2", lam=0.01, epochs=20)
    assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(a.val_loss, b.val_loss)
    assert a.train_loss.shape == a.val_loss.shape == a.test_accuracy.shape == (20,)
    assert a.weights.shape == (64 * 64,)
    assert a.train_loss[-1] < a.train_loss[0]


def test_l2_and_l1_runs(data):
    train = overfit_lab.train_with_penalty
    plain_l2 = train(sgd_l2_step, data, penalty="L2", lam=0.0, epochs=40)
    plain_l1 = train(proximal_l1_step, data, penalty="L1", lam=0.0, epochs=40)
    np.testing.assert_allclose(plain_l2.val_loss, plain_l1.val_loss, rtol=1e-12)
    strong_l2 = train(sgd_l2_step, data, penalty="L2", lam=0.1, epochs=40)
    sparse = train(proximal_l1_step, data, penalty="L1", lam=0.01, epochs=40)
    assert np.abs(strong_l2.weights).max() < np.abs(plain_l2.weights).max()
    assert np.sum(strong_l2.weights == 0) == 0 and np.sum(sparse.weights == 0) > 1000
    with pytest.raises(ValueError, match="penalty"):
        overfit_lab.train_with_penalty(sgd_l2_step, data, penalty="L3", epochs=1)


def test_training_names_a_missing_step(data):
    _, message = learner.attempt(overfit_lab.train_with_penalty, _stub("sgd_l2_step"), data,
                                 epochs=2)
    assert message == "implement `sgd_l2_step` first"


def test_stopping_summary(data):
    run = overfit_lab.train_with_penalty(sgd_l2_step, data, penalty="L2", lam=0.0, epochs=15)
    summary, message = overfit_lab.stopping_summary(run, simple_stopping, 5)
    assert message is None and summary["stop_epoch"] == 14
    assert summary["val_accuracy"] == run.val_accuracy[summary["best_epoch"]]
    assert overfit_lab.stopping_summary(run, _stub("early_stopping")) == (
        None, "implement `early_stopping` first")
    summary, message = overfit_lab.stopping_summary(run, lambda v, p: (9, 3))
    assert summary is None and "best_epoch <= stop_epoch" in message


def _labelled_lines(ax):
    return {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}


def test_explorer_redraws_on_a_new_lambda_and_penalty(data):
    explorer = overfit_lab.OverfitExplorer(sgd_l2_step, proximal_l1_step, simple_stopping,
                                           data=data, lam=1e-2, epochs=25, patience=5)
    left, right = explorer.figure.axes
    assert explorer.messages == [] and bytes(explorer.image.value).startswith(b"\x89PNG")
    assert {"training", "validation", "validation, lambda = 0"} <= set(_labelled_lines(left))
    first = _labelled_lines(left)["validation"].get_ydata().copy()
    count = explorer.redraw_count
    explorer.lam.value = 0.1
    assert explorer.redraw_count == count + 1
    assert not np.allclose(_labelled_lines(explorer.figure.axes[0])["validation"].get_ydata(),
                           first)
    explorer.penalty.value = "L1"
    assert explorer.redraw_count == count + 2
    assert "exactly 0:" in explorer.figure.axes[1].get_title()
    assert set(explorer.runs) == {("L2", 0.01), ("L2", 0.0), ("L2", 0.1), ("L1", 0.1), ("L1", 0.0)}


def test_explorer_with_stubs_says_what_to_implement(data):
    explorer = overfit_lab.OverfitExplorer(_stub("sgd_l2_step"), proximal_l1_step,
                                           _stub("early_stopping"), data=data, epochs=5)
    assert explorer.messages == ["L2: implement `sgd_l2_step` first"]
    assert "implement `sgd_l2_step` first" in explorer._repr_mimebundle_()["text/plain"]
    explorer.penalty.value = "L1"
    assert explorer.messages == ["early stopping: implement `early_stopping` first"]


def test_explorer_reuses_runs_made_already(data):
    run = overfit_lab.train_with_penalty(sgd_l2_step, data, penalty="L2", lam=0.01, epochs=10)
    explorer = overfit_lab.OverfitExplorer(_stub("sgd_l2_step"), proximal_l1_step, data=data,
                                           lam=1e-2, epochs=10,
                                           runs={("L2", 0.01): run, ("L2", 0.0): run})
    assert explorer.messages == [] and explorer.runs[("L2", 0.01)] == (run, None)
    other = overfit_lab.OverfitExplorer(_stub("sgd_l2_step"), proximal_l1_step, data=data,
                                        epochs=11, runs={("L2", 0.01): run})
    assert other.messages == ["L2: implement `sgd_l2_step` first"], "runs of another length"
