"""Lesson 05 (regularization): what this lesson alone states and computes.

The contract every lesson keeps (structure, checks, student copy, notebook runs) is tested in
test_lesson_contract.py. Here: the graded functions are the expected ones, the misconceptions and
conventions are stated, the solutions agree with torch and scikit-learn beyond the scenarios, and
the early-stopping answers, worked out by hand in the check cell, are confirmed by brute force
from the definition.
"""

from __future__ import annotations

import lesson_harness as harness
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import Lasso
from sklearn.model_selection import KFold

from dlopt.kit.torch_bridge import torch_update_rule
from dlopt.lessons.l05_regularization.ridge import ridge_fit

LESSON = "05_regularization"
GRADED = [
    "l2_penalty", "l2_grad", "sgd_l2_step", "l1_subgradient", "soft_threshold",
    "proximal_l1_step", "early_stopping", "kfold_indices", "choose_lambda_by_cv",
]
solved = harness.solved  # a fixture: the solved notebook's namespace, for LESSON


# --- what this lesson states ---------------------------------------------------------------------
test_graded_functions_are_the_expected_ones = harness.graded_functions_test(LESSON, GRADED)


def test_misconceptions_and_conventions_are_stated():
    text = harness.markdown(LESSON)
    assert 'Misconception: "L2 sets weights to zero like L1."' in text
    assert 'Misconception: "regularization is applied after the update."' in text
    assert "decoupled weight decay" in text.lower()
    assert "The convention of this course" in text
    assert r"\lambda\lVert w\rVert^2$ is a mistake" in text
    assert "KFold(n_splits=k)" in text and "shuffle=False" in text
    assert "restored" in text and "patience" in text


# --- early stopping: the hand-worked answers, confirmed by brute force ---------------------------
def _stopping(losses, patience, *, wait=None, ties=False, reset=True, future=False,
              last=False, offset=0):
    """Early stopping from its definition, and the classic wrong variants (keyword switches)."""
    wait = patience if wait is None else wait
    best, bad, stop = 0, 0, len(losses) - 1
    for e in range(len(losses)):
        earlier = losses[:e]
        improves = e == 0 or (losses[e] <= min(earlier) if ties else losses[e] < min(earlier))
        if improves:
            best = e
            bad = 0 if reset else bad
            continue
        bad += 1
        if (bad if not reset else e - best) >= wait:
            stop = e
            break
    if future:
        best = int(np.argmin(losses))
    if last:
        best = stop
    return best + offset, stop + offset


VARIANTS = [  # the columns of BY_HAND in the check cell
    {}, {"last": True}, {"wait_delta": 1}, {"wait_delta": -1}, {"future": True}, {"ties": True},
    {"reset": False}, {"offset": 1},
]


def _variant(losses, patience, column):
    options = dict(VARIANTS[column])
    delta = options.pop("wait_delta", 0)
    return _stopping(list(losses), patience, wait=patience + delta, **options)


def test_hand_worked_early_stopping_answers_match_the_definition(solved):
    table = solved["BY_HAND"]
    for label, (losses, patience) in solved["ES_CURVES"].items():
        for column, answer in enumerate(table[label]):
            if answer is not None:
                assert _variant(losses, patience, column) == answer, (label, column)


@pytest.mark.parametrize("seed", range(5))
def test_early_stopping_agrees_with_the_definition_on_random_curves(solved, seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(1, 40))
        losses = np.round(np.cumsum(rng.normal(0, 1, size=n)), 1)  # rounding makes ties
        patience = int(rng.integers(1, 6))
        best, stop = solved["early_stopping"](losses, patience)
        assert (int(best), int(stop)) == _stopping(list(losses), patience)


# --- the solutions beyond the scenarios ----------------------------------------------------------
def test_l2_gradient_is_what_torch_weight_decay_adds(solved):
    w = np.random.default_rng(0).normal(size=(3, 4))
    lam = 0.37
    w_next, _ = torch_update_rule("SGD")(w, np.zeros_like(w), {}, lr=1.0, weight_decay=lam)
    np.testing.assert_allclose(solved["l2_grad"](w, lam), w - w_next, rtol=1e-12)
    t = torch.tensor(w)
    assert solved["l2_penalty"](w, lam) == pytest.approx(lam / 2 * float((t**2).sum()), rel=1e-12)


def test_sgd_l2_step_equals_torch_sgd_with_weight_decay_for_random_steps(solved):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(5, 2))
    for _ in range(20):
        dw = rng.normal(size=w.shape)
        lr, lam = rng.uniform(0.01, 0.5), rng.uniform(0, 2)
        ours, state = solved["sgd_l2_step"](w, dw, {}, lr=lr, lam=lam)
        theirs, _ = torch_update_rule("SGD")(w, dw, {}, lr=lr, weight_decay=lam)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
        assert state == {}
        w = ours


@pytest.mark.parametrize("scale", [0.1, 1.0, 100.0])
def test_soft_threshold_and_prox_agree_with_torch_and_lasso(solved, scale):
    rng = np.random.default_rng(int(scale * 10))
    w, dw = rng.normal(0, scale, size=(6, 7)), rng.normal(0, scale, size=(6, 7))
    t = scale * 0.5
    out = solved["soft_threshold"](w, t)
    np.testing.assert_array_equal(out, F.softshrink(torch.tensor(w), t).numpy())
    assert np.sum(out == 0.0) > 0
    lr, lam = 0.3, 2 * scale
    prox = solved["proximal_l1_step"](w, dw, lr=lr, lam=lam)
    u = (w - lr * dw).ravel()
    lasso = Lasso(alpha=lr * lam / u.size, fit_intercept=False, tol=1e-14, max_iter=10)
    np.testing.assert_allclose(prox.ravel(), lasso.fit(np.eye(u.size), u).coef_, atol=1e-12)
    np.testing.assert_array_equal(prox == 0, lasso.coef_.reshape(prox.shape) == 0)


def test_l1_subgradient_agrees_with_torch_abs_backward(solved):
    w = np.array([-3.0, -1e-300, 0.0, -0.0, 1e-300, 2.0])
    t = torch.tensor(w, requires_grad=True)
    (0.7 * t.abs()).sum().backward()
    np.testing.assert_array_equal(solved["l1_subgradient"](w, 0.7), t.grad.numpy())


@pytest.mark.parametrize("n,k", [(2, 2), (7, 3), (20, 6), (31, 31), (100, 7)])
def test_kfold_indices_agree_with_sklearn(solved, n, k):
    ours = solved["kfold_indices"](n, k)
    theirs = list(KFold(n_splits=k).split(np.zeros((n, 1))))
    assert len(ours) == k
    for (tr, va), (tr2, va2) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(tr, tr2)
        np.testing.assert_array_equal(va, va2)
    assert sorted(np.concatenate([va for _, va in ours]).tolist()) == list(range(n))


def test_choose_lambda_by_cv_agrees_with_sklearn_cross_val_score(solved):
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 6))  # 30 = 5 * 6: every fold has 24 training examples
    y = X @ rng.normal(size=6) + rng.normal(size=30)
    lams = np.logspace(-3, 2, 6)
    best, errors = solved["choose_lambda_by_cv"](X, y, lams, 5, ridge_fit)
    expected = [-cross_val_score(Ridge(alpha=24 * lam, fit_intercept=False), X, y, cv=KFold(5),
                                 scoring="neg_mean_squared_error").mean() for lam in lams]
    np.testing.assert_allclose(errors, expected, rtol=1e-9)
    assert best == lams[int(np.argmin(expected))]


# --- the executed notebook ------------------------------------------------------------------------
@pytest.mark.slow
def test_solved_notebook_shows_the_lasso_zeros_and_draws_its_explorer():
    nb = harness.executed_solution(LESSON)
    text = harness.printed_text(nb)
    assert "35 of 40 weights exactly 0" in text and "same zeros: True" in text
    harness.assert_draws_a_figure(nb, "experiment_overfit_explorer")


def _torch_run(optimizer: str, H, b, *, lam: float, lr: float, steps: int) -> np.ndarray:
    w = torch.zeros(len(b), dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, optimizer)([w], lr=lr, weight_decay=lam)
    H_t, b_t = torch.from_numpy(H), torch.from_numpy(b)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * w @ H_t @ w - b_t @ w).backward()
        opt.step()
    return w.detach().numpy()


def test_adam_l2_text_quotes_where_torch_ends_and_the_box_limit():
    """md_adam_l2 quotes torch's end points; AdamW heads for the box corner 1/lambda, not for a
    minimizer of L + lambda/2 |w|^2 (the earlier text mistook a transient for the end point)."""
    H, lam = np.diag([10.0, 1.0, 0.1]), 2.0
    b = H @ np.ones(3)
    text = " ".join(harness.markdown(LESSON).split())
    ridge = np.linalg.solve(H + lam * np.eye(3), b)
    adam = _torch_run("Adam", H, b, lam=lam, lr=0.05, steps=500)
    np.testing.assert_allclose(adam, ridge, atol=5e-4)  # Adam + L2 is at the L2 minimizer
    quoted = ", ".join(f"{x:.3f}" for x in ridge)
    assert f"$(H+\\lambda I)^{{-1}}b = ({quoted})$" in text
    adamw = _torch_run("AdamW", H, b, lam=lam, lr=0.05, steps=500)
    assert np.ptp(adamw) < 1e-6  # one value in every coordinate
    assert "After 500 steps it is at $({0:.3f}, {0:.3f}, {0:.3f})$".format(adamw[0]) in text
    later = _torch_run("AdamW", H, b, lam=lam, lr=0.05, steps=2000)
    assert adamw[0] < later[0] < 1 / lam  # still creeping towards the corner 1/lambda = 0.5
    assert "the corner $(0.5, 0.5, 0.5)$" in text
