"""Lesson 06 (batch norm): what this lesson alone states and computes.

The contract every lesson keeps (structure, checks, student copy, notebook runs) is tested in
test_lesson_contract.py. Here: the graded functions are the expected ones, the misconceptions are
stated, mistakes written the way a learner writes them in NumPy are named, and the solutions
agree with torch beyond the scenarios.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import lesson_harness as harness
import numpy as np
import pytest
import torch
from lesson_harness import MISTAKE_PREFIX

from dlopt.grading import call, judge
from dlopt_instructor.batch_norm import torch_batchnorm_backward, torch_batchnorm_forward

LESSON = "06_batch_norm"
GRADED = ["batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt",
          "layernorm_forward", "layernorm_backward"]
solved, exercises = harness.solved, harness.exercises  # fixtures, for LESSON


# --- what this lesson states --------------------------------------------------------------------
test_graded_functions_are_the_expected_ones = harness.graded_functions_test(LESSON, GRADED)


def test_misconceptions_are_stated():
    text = harness.markdown(LESSON)
    for phrase in ("batch norm reduces memory", "adds", "Why $\\gamma$ and $\\beta$?", "identity",
                   "batch of one", "running statistics", "unbiased", "weight of the new batch"):
        assert phrase in text, phrase


def test_the_gradient_check_helper_is_given_not_in_dlopt():
    import dlopt

    cells = {harness.grade_id(c): c for c in harness.read(LESSON).cells}
    helper = harness.nbgrader(cells["numerical_gradient"])
    assert not helper["solution"] and helper["locked"]
    package = Path(dlopt.__file__).parent
    for module in package.glob("*.py"):
        assert "def numerical_gradient" not in module.read_text(), module.name


# --- mistakes as a learner writes them, in NumPy -------------------------------------------------
def _forward(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5, bug=""):
    """The forward pass with one deliberate bug (or none)."""
    n, d = x.shape
    if "running_mean" not in state:
        state["running_mean"] = np.zeros(d)
    if "running_var" not in state:
        state["running_var"] = np.ones(d)
    if bug == "no_eps":
        eps = 0.0

    def normalize(centred, var):
        if bug == "eps_outside_sqrt":
            return centred / (np.sqrt(var) + eps)
        return centred / np.sqrt(var + eps)

    def scale(x_hat):
        return x_hat if bug == "no_gamma_beta" else gamma * x_hat + beta

    if not train and bug not in ("eval_batch_statistics", "ignores_train_flag"):
        return scale(normalize(x - state["running_mean"], state["running_var"])), None
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc ** 2).mean(axis=0)
    x_hat = normalize(xc, var)
    if train or bug == "ignores_train_flag":
        m = 1 - momentum if bug == "momentum_reversed" else momentum
        new_var = var if bug == "biased_running_var" else var * n / (n - 1)
        running_mean = (1 - m) * state["running_mean"] + m * mu
        running_var = (1 - m) * state["running_var"] + m * new_var
        if bug != "running_not_stored":
            state["running_mean"], state["running_var"] = running_mean, running_var
    cache = {"x_hat": x_hat, "xc": xc, "var": var, "inv_std": 1 / np.sqrt(var + eps),
             "gamma": gamma, "eps": eps}
    return scale(x_hat), (cache if train else None)


def _backward(dout, cache, *, bug=""):
    """The graph backward pass with one deliberate bug (or none)."""
    x_hat, xc, var, inv_std, gamma, eps = (cache[k] for k in
                                           ("x_hat", "xc", "var", "inv_std", "gamma", "eps"))
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = dout * x_hat if bug == "dgamma_not_summed" else (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    dxc = dx_hat * inv_std
    if bug not in ("no_variance_path", "statistics_constant"):
        dvar = -0.5 * (var + eps) ** -1.5 * (dx_hat * xc).sum(axis=0)
        dxc = dxc + (2.0 / (n - 1 if bug == "bessel_in_backward" else n)) * xc * dvar
    dx = dxc
    if bug not in ("no_mean_path", "statistics_constant"):
        dx = dxc - dxc.sum(axis=0) / n
    return dx, dgamma, dbeta


FORWARD_BUGS = {
    "biased_running_var": "the running variance averaged the biased batch variance",
    "momentum_reversed": "momentum is the weight of the NEW batch",
    "eval_batch_statistics": "evaluation mode normalized with the batch's own mean",
    "ignores_train_flag": "train=False was ignored",
    "running_not_stored": "the running statistics never changed",
    "eps_outside_sqrt": "eps was added outside the square root",
    "no_eps": "eps is missing",
    "no_gamma_beta": "returned x_hat without gamma and beta",
}
BACKWARD_BUGS = {
    "no_mean_path": ("path through the batch mean", "the term - sum(dx_hat) is missing"),
    "no_variance_path": ("path through the batch variance",
                         "x_hat * sum(dx_hat * x_hat) is missing"),
    "statistics_constant": ("treats the batch mean and variance as constants",) * 2,
    "bessel_in_backward": ("differentiated as sum / (N - 1)",) * 2,
    "dgamma_not_summed": ("dgamma was not summed over the batch",) * 2,
}


def _mistakes_named(exercise, fn) -> list[str]:
    """The mistake named for each failing scenario, public and hidden ('' when none)."""
    data = exercise.collect(exercise.reference)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        verdict = judge(data, [call(fn, case, driver=exercise.driver)
                               for case, _ in exercise._all_cases()])
    return [(c.label, c.hidden, c.mistake) for c in verdict.cases if not c.passed]


def test_numpy_forward_with_no_bug_passes(exercises):
    exercises["batchnorm_forward"].check(_forward)


@pytest.mark.parametrize("bug", FORWARD_BUGS)
def test_numpy_forward_bugs_are_named(exercises, bug):
    def forward(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5):
        return _forward(x, gamma, beta, state, train=train, momentum=momentum, eps=eps, bug=bug)

    message = harness.public_failure(exercises["batchnorm_forward"], forward)
    assert MISTAKE_PREFIX + FORWARD_BUGS[bug] in message, message
    named = _mistakes_named(exercises["batchnorm_forward"], forward)
    # public scenarios name this very mistake; a hidden one may match an equivalent one (with
    # momentum=1, "running statistics not stored" and "momentum reversed" give the same output)
    unnamed = [label for label, hidden, mistake in named
               if not (mistake.startswith(FORWARD_BUGS[bug]) or (hidden and mistake))]
    assert named and not unnamed, f"{bug}: failing scenarios without its name: {unnamed}"


@pytest.mark.parametrize("name", ["batchnorm_backward", "batchnorm_backward_alt"])
@pytest.mark.parametrize("bug", BACKWARD_BUGS)
def test_numpy_backward_bugs_are_named(exercises, name, bug):
    exercises[name].check(_backward)

    def backward(dout, cache):
        return _backward(dout, cache, bug=bug)

    message = harness.public_failure(exercises[name], backward)
    expected = BACKWARD_BUGS[bug][name == "batchnorm_backward_alt"]
    assert MISTAKE_PREFIX in message and expected in message, message
    named = _mistakes_named(exercises[name], backward)
    unnamed = [label for label, _, mistake in named if expected not in mistake]
    assert named and not unnamed, f"{bug}: failing scenarios without its name: {unnamed}"


def test_forward_that_writes_into_x_is_flagged(exercises):
    def forward(x, gamma, beta, state, **kwargs):
        out, cache = _forward(x, gamma, beta, state, **kwargs)
        x -= 1.0
        return out, cache

    message = harness.public_failure(exercises["batchnorm_forward"], forward)
    assert "changed its input (argument 1) in place" in message


def test_forward_with_a_cache_of_its_own_is_told_the_keys(exercises):
    def forward(x, gamma, beta, state, **kwargs):
        out, cache = _forward(x, gamma, beta, state, **kwargs)
        return out, (None if cache is None else (cache["x_hat"], cache["gamma"]))

    message = harness.public_failure(exercises["batchnorm_forward"], forward)
    assert "cache dict with exactly the keys" in message


# --- the solutions beyond the scenarios --------------------------------------------------------
@pytest.mark.parametrize("n,d,momentum", [(2, 3, 0.1), (50, 8, 0.25), (7, 1, 1.0)])
def test_solutions_match_torch_batchnorm1d_over_many_steps(solved, n, d, momentum):
    rng = np.random.default_rng(n * d)
    layer = torch.nn.BatchNorm1d(d, momentum=momentum, dtype=torch.float64)
    gamma, beta = rng.normal(size=d), rng.normal(size=d)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    state: dict = {}
    for _ in range(12):
        x = rng.normal(rng.normal(), rng.uniform(0.1, 5.0), size=(n, d))
        dout = rng.normal(size=(n, d))
        t = torch.from_numpy(x).requires_grad_()
        layer.train()
        layer.zero_grad()
        expected = layer(t)
        expected.backward(torch.from_numpy(dout))
        with np.errstate(all="raise"):
            out, cache = solved["batchnorm_forward"](x, gamma, beta, state, momentum=momentum)
        np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(state["running_mean"], layer.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(state["running_var"], layer.running_var.numpy(), rtol=1e-12)
        for backward in ("batchnorm_backward", "batchnorm_backward_alt"):
            dx, dgamma, dbeta = solved[backward](dout, cache)
            np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(dgamma, layer.weight.grad.numpy(), rtol=1e-10)
            np.testing.assert_allclose(dbeta, layer.bias.grad.numpy(), rtol=1e-10)
    layer.eval()
    x = rng.normal(size=(3, d))
    before = copy.deepcopy(state)
    out, cache = solved["batchnorm_forward"](x, gamma, beta, state, train=False)
    assert cache is None
    np.testing.assert_allclose(out, layer(torch.from_numpy(x)).detach().numpy(), rtol=1e-10)
    assert all(np.array_equal(before[k], state[k]) for k in before)


def test_torch_reference_is_torch_batchnorm1d():
    rng = np.random.default_rng(5)
    x, gamma, beta = rng.normal(size=(6, 3)), rng.normal(size=3), rng.normal(size=3)
    state: dict = {}
    out, cache = torch_batchnorm_forward(x, gamma, beta, state, momentum=0.2)
    layer = torch.nn.BatchNorm1d(3, momentum=0.2, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    t = torch.from_numpy(x).requires_grad_()
    expected = layer(t)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(state["running_var"], layer.running_var.numpy(), rtol=1e-12)
    dout = rng.normal(size=(6, 3))
    expected.backward(torch.from_numpy(dout))
    dx, dgamma, dbeta = torch_batchnorm_backward(dout, cache)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dgamma, layer.weight.grad.numpy(), rtol=1e-12)


# --- the executed notebook ------------------------------------------------------------------------
@pytest.mark.slow
def test_solved_notebook_agrees_with_torch_and_draws_its_explorer():
    nb = harness.executed_solution(LESSON)
    assert "DISAGREES" not in harness.printed_text(nb)
    harness.assert_draws_a_figure(nb, "experiment_explorer")


def test_backward_projection_statement_holds_only_up_to_eps():
    """md_backward_alt: sum_i dx_i = 0 exactly; sum_i dx_i x_hat_i = r eps/(var+eps) sum dxh xh,
    zero only for eps = 0 (checked with torch's autograd; gamma = 1, so dx_hat = dy)."""
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.normal(size=(6, 3)), requires_grad=True)
    dy = torch.tensor(rng.normal(size=(6, 3)))
    for eps in (0.0, 0.5):
        mean, var_ = x.mean(dim=0), x.var(dim=0, unbiased=False)
        out = (x - mean) / torch.sqrt(var_ + eps)  # by autograd: F.batch_norm needs eps > 0
        (dx,) = torch.autograd.grad(out, x, dy)
        var = x.detach().var(dim=0, unbiased=False)
        x_hat = (x.detach() - x.detach().mean(dim=0)) / torch.sqrt(var + eps)
        r = 1 / torch.sqrt(var + eps)
        zeros = torch.zeros(3, dtype=torch.float64)
        torch.testing.assert_close(dx.sum(dim=0), zeros, atol=1e-12, rtol=0)
        projected = (dx * x_hat).sum(dim=0)
        torch.testing.assert_close(projected, r * eps / (var + eps) * (dy * x_hat).sum(dim=0))
        assert (eps == 0) == bool(torch.all(projected.abs() < 1e-12))
    text = " ".join(harness.markdown(LESSON).split())
    assert "zero only for $\\epsilon=0$" in text


# --- layer norm (issue 14, item 9) ---------------------------------------------------------------
@pytest.mark.parametrize("n,d,eps", [(1, 5, 1e-5), (7, 3, 1e-5), (12, 16, 1e-3)])
def test_layernorm_solutions_match_torch_layer_norm_and_autograd(solved, n, d, eps):
    rng = np.random.default_rng(n * d)
    x, gamma, beta = rng.normal(2.0, 3.0, size=(n, d)), rng.normal(size=d), rng.normal(size=d)
    dout = rng.normal(size=(n, d))
    layer = torch.nn.LayerNorm(d, eps=eps, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    t = torch.from_numpy(x.copy()).requires_grad_()
    expected = layer(t)
    expected.backward(torch.from_numpy(dout))
    before = x.copy()
    with np.errstate(all="raise"):
        out, cache = solved["layernorm_forward"](x, gamma, beta, eps=eps)
        dx, dgamma, dbeta = solved["layernorm_backward"](dout, cache)
    np.testing.assert_array_equal(x, before)
    assert sorted(cache) == sorted(["x_hat", "xc", "var", "inv_std", "gamma", "eps"])
    assert cache["var"].shape == cache["inv_std"].shape == (n, 1)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(dgamma, layer.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dbeta, layer.bias.grad.numpy(), rtol=1e-10, atol=1e-12)
    # no running statistics, no mode: each row alone gives the same row
    alone = np.vstack([solved["layernorm_forward"](x[i:i + 1], gamma, beta, eps=eps)[0]
                       for i in range(n)])
    np.testing.assert_allclose(alone, out, rtol=0, atol=1e-14)


def test_torch_layer_norm_references_are_torch():
    from dlopt_instructor.layer_norm import torch_layernorm_backward, torch_layernorm_forward

    rng = np.random.default_rng(11)
    x, gamma, beta, dout = (rng.normal(size=s) for s in ((5, 4), (4,), (4,), (5, 4)))
    out, cache = torch_layernorm_forward(x, gamma, beta)
    t = torch.from_numpy(x).requires_grad_()
    g, b = torch.from_numpy(gamma).requires_grad_(), torch.from_numpy(beta).requires_grad_()
    expected = torch.nn.functional.layer_norm(t, (4,), g, b, eps=1e-5)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-12)
    expected.backward(torch.from_numpy(dout))
    grads = torch_layernorm_backward(dout, cache)
    for got, want in zip(grads, (t.grad, g.grad, b.grad), strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


def _ln_forward(x, gamma, beta, eps=1e-5, *, axis=1):
    mu = x.mean(axis=axis, keepdims=True)
    xc = x - mu
    var = (xc ** 2).mean(axis=axis, keepdims=True)
    x_hat = xc / np.sqrt(var + eps)
    n, d = x.shape
    row_var = (x - x.mean(axis=1, keepdims=True)).var(axis=1, keepdims=True)
    cache = {"x_hat": x_hat, "xc": x - x.mean(axis=1, keepdims=True), "var": row_var,
             "inv_std": 1 / np.sqrt(row_var + eps), "gamma": gamma, "eps": eps}
    return gamma * x_hat + beta, cache


def _ln_backward(dout, cache, *, dx_axis=1, param_axis=0):
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    m = dout.shape[dx_axis]
    dx_hat = dout * gamma
    dx = inv_std / m * (m * dx_hat - dx_hat.sum(axis=dx_axis, keepdims=True)
                        - x_hat * (dx_hat * x_hat).sum(axis=dx_axis, keepdims=True))
    return dx, (dout * x_hat).sum(axis=param_axis), dout.sum(axis=param_axis)


def test_numpy_layernorm_passes_and_its_slips_are_named(exercises):
    exercises["layernorm_forward"].check(_ln_forward)
    exercises["layernorm_backward"].check(_ln_backward)

    def over_batch(x, gamma, beta, eps=1e-5):
        return _ln_forward(x, gamma, beta, eps, axis=0)

    message = harness.public_failure(exercises["layernorm_forward"], over_batch)
    assert MISTAKE_PREFIX + "statistics over the batch (axis 0): that is batch norm" in message
    for kwargs, expected in (({"dx_axis": 0}, "dx sums over the batch (axis 0)"),
                             ({"param_axis": 1}, "dgamma and dbeta were summed over the features")):
        def backward(dout, cache, kwargs=kwargs):
            return _ln_backward(dout, cache, **kwargs)

        message = harness.public_failure(exercises["layernorm_backward"], backward)
        assert MISTAKE_PREFIX + expected in message, message


def test_layer_norm_experiment_quotes_what_it_computes(solved):
    """md_layernorm_experiment: layer norm's output never changes with the batch; batch norm in
    training mode changes by about 1.9 with other digits and 5.6 with the other source, the
    padding or alone; in evaluation mode by 0."""
    from dlopt.kit.data import load_digits_split
    from dlopt.lessons.l06_batch_norm import layer_norm_lab

    changes = layer_norm_lab.batch_composition(solved["layernorm_forward"],
                                               solved["batchnorm_forward"],
                                               load_digits_split(seed=0).X_train)
    assert np.all(changes["layer norm"] == 0) and np.all(changes["batch norm (evaluation)"] == 0)
    train = changes["batch norm (training)"]
    assert round(train[1], 1) == 1.9 and all(abs(v - 5.6) < 0.1 for v in train[2:])
    text = " ".join(harness.markdown(LESSON).split())
    assert ("about 1.9 with 31 different digits, about 5.6 with the other source or the padding"
            in text)
    assert "**layer norm**: 0 in every column" in text
