"""Lesson 06's helper modules: batch-norm oracles, driver and mistakes, the torch bridge, the
experiments and the explorer, run headless with torch's batch norm standing in for the learner's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlopt.grading import codec
from dlopt.grading.drivers.batch_norm import CACHE_KEYS, run_batchnorm_forward
from dlopt.kit import plotting
from dlopt.kit.data import DigitsSplit
from dlopt.lessons.l06_batch_norm import bn_lab, bn_widgets
from dlopt.lessons.l06_batch_norm.bn_torch import numpy_batchnorm
from dlopt_instructor import batch_norm
from dlopt_instructor.batch_norm import (
    BACKWARD_MISTAKES,
    FORWARD_MISTAKES,
    backward_mistake,
    forward_mistake,
    torch_batchnorm_backward,
    torch_batchnorm_cache,
    torch_batchnorm_forward,
)

FORWARD, BACKWARD = torch_batchnorm_forward, torch_batchnorm_backward


def not_implemented(*args, **kwargs):
    raise NotImplementedError("replace this line with your code")


@pytest.fixture(scope="module")
def small_data() -> DigitsSplit:
    """A small stand-in for the digits: 3 Gaussian classes in 8 dimensions."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 2, size=(3, 8))
    y = rng.integers(0, 3, size=300)
    X = centres[y] + rng.normal(size=(300, 8))
    return DigitsSplit(X[:240], X[240:], y[:240], y[240:])


# --- oracles, driver, mistakes ---------------------------------------------------------------
def test_cache_holds_the_documented_keys_and_shapes():
    x = np.random.default_rng(1).normal(size=(5, 3))
    cache = torch_batchnorm_cache(x, np.ones(3), eps=1e-3)
    assert tuple(cache) == CACHE_KEYS
    assert cache["x_hat"].shape == cache["xc"].shape == (5, 3)
    assert cache["var"].shape == cache["inv_std"].shape == cache["gamma"].shape == (3,)
    np.testing.assert_allclose(cache["xc"], x - x.mean(axis=0))
    np.testing.assert_allclose(cache["inv_std"], 1 / np.sqrt(x.var(axis=0) + 1e-3))
    np.testing.assert_allclose(cache["x_hat"], cache["xc"] * cache["inv_std"])
    assert cache["eps"] == 1e-3 and type(cache["eps"]) is float


def test_forward_creates_and_updates_the_state_in_place_only_in_training():
    rng = np.random.default_rng(2)
    state: dict = {}
    x = rng.normal(size=(4, 2))
    FORWARD(x, np.ones(2), np.zeros(2), state)
    np.testing.assert_allclose(state["running_mean"], 0.1 * x.mean(axis=0))
    np.testing.assert_allclose(state["running_var"], 0.9 + 0.1 * x.var(axis=0, ddof=1))
    before = {k: v.copy() for k, v in state.items()}
    out, cache = FORWARD(x, np.ones(2), np.zeros(2), state, train=False)
    assert cache is None
    assert all(np.array_equal(before[k], state[k]) for k in before)
    np.testing.assert_allclose(out, (x - before["running_mean"])
                               / np.sqrt(before["running_var"] + 1e-5))


def test_driver_uses_one_state_of_its_own_and_reports_the_eval_call():
    rng = np.random.default_rng(3)
    xs = list(rng.normal(size=(3, 6, 2)))
    start = {"running_mean": np.zeros(2), "running_var": np.ones(2)}
    result = run_batchnorm_forward(FORWARD, xs, np.ones(2), np.zeros(2), state=start,
                                   x_eval=rng.normal(size=(2, 2)))
    assert start["running_mean"].tolist() == [0.0, 0.0], "the case's state is not touched"
    assert len(result["out"]) == 3 and result["eval_changed_state"] is False
    state: dict = {}
    for x in xs:
        FORWARD(x, np.ones(2), np.zeros(2), state)
    np.testing.assert_allclose(result["running_var"], state["running_var"])
    codec.encode(result)  # plain data: it travels to the grader
    assert codec.decode(codec.encode(run_batchnorm_forward)) is run_batchnorm_forward


def test_driver_explains_a_wrong_interface():
    x = [np.ones((3, 2))]
    with pytest.raises(ValueError, match="pair"):
        run_batchnorm_forward(lambda x, *a, **k: x, x, np.ones(2), np.zeros(2))
    with pytest.raises(ValueError, match="exactly the keys"):
        run_batchnorm_forward(lambda x, *a, **k: (x, {}), x, np.ones(2), np.zeros(2))

    def forgets_state(x, gamma, beta, state, **kwargs):
        return FORWARD(x, gamma, beta, {}, **kwargs)

    with pytest.raises(ValueError, match="state dict has no"):
        run_batchnorm_forward(forgets_state, x, np.ones(2), np.zeros(2))


@pytest.mark.parametrize("kind", FORWARD_MISTAKES)
def test_forward_mistakes_differ_from_the_reference(kind):
    rng = np.random.default_rng(4)
    xs = [np.column_stack([rng.normal(0, 0.01, 8), np.full(8, 3.0), rng.normal(size=8)])] * 2
    args = (xs, np.array([2.0, 1.0, 0.5]), np.array([0.0, 1.0, -1.0]))
    kwargs = {"x_eval": rng.normal(size=(3, 3))}
    right = run_batchnorm_forward(FORWARD, *args, **kwargs)
    with np.errstate(all="ignore"):
        wrong = run_batchnorm_forward(forward_mistake(kind), *args, **kwargs)
    differs = [k for k in right if not np.allclose(np.asarray(right[k], dtype=float),
                                                   np.asarray(wrong[k], dtype=float),
                                                   equal_nan=True)]
    assert differs, kind


@pytest.mark.parametrize("kind", BACKWARD_MISTAKES)
def test_backward_mistakes_get_dx_wrong_and_keep_the_rest(kind):
    rng = np.random.default_rng(5)
    cache = torch_batchnorm_cache(rng.normal(size=(6, 3)), rng.normal(size=3))
    dout = rng.normal(size=(6, 3))
    right = BACKWARD(dout, cache)
    wrong = backward_mistake(kind)(dout, cache)
    if kind == "dgamma_not_summed":
        assert wrong[1].shape == (6, 3)
        np.testing.assert_allclose(wrong[1].sum(axis=0), right[1])
        np.testing.assert_allclose(wrong[0], right[0])
    else:
        assert not np.allclose(wrong[0], right[0])
        np.testing.assert_allclose(wrong[1], right[1])
        np.testing.assert_allclose(wrong[2], right[2])


def test_unknown_mistakes_are_refused():
    with pytest.raises(ValueError, match="choose one of"):
        forward_mistake("nope")
    with pytest.raises(ValueError, match="choose one of"):
        backward_mistake("nope")


def test_oracles_keep_their_names_under_the_thread_decorator():
    assert batch_norm.torch_batchnorm_cache.__name__ == "torch_batchnorm_cache"


# --- the torch bridge --------------------------------------------------------------------------
def test_numpy_batchnorm_trains_like_torch():
    rng = np.random.default_rng(6)
    bn = numpy_batchnorm(FORWARD, BACKWARD)
    x = torch.tensor(rng.normal(size=(7, 4)), requires_grad=True)
    gamma = torch.tensor(rng.normal(size=4), requires_grad=True)
    beta = torch.tensor(rng.normal(size=4), requires_grad=True)
    dout = torch.tensor(rng.normal(size=(7, 4)))
    state: dict = {}
    bn(x, gamma, beta, state).backward(dout)
    grads = [t.grad.clone() for t in (x, gamma, beta)]
    for t in (x, gamma, beta):
        t.grad = None
    rm, rv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    torch.nn.functional.batch_norm(x, rm, rv, gamma, beta, training=True).backward(dout)
    for mine, theirs in zip(grads, (x.grad, gamma.grad, beta.grad), strict=True):
        torch.testing.assert_close(mine, theirs)
    np.testing.assert_allclose(state["running_var"], rv.numpy())
    out = bn(x, gamma, beta, state, train=False)
    assert not out.requires_grad and out.shape == (7, 4)


def test_numpy_batchnorm_names_a_wrong_shape():
    bn = numpy_batchnorm(lambda x, g, b, s, **k: (x[:1], {}), BACKWARD)
    with pytest.raises(ValueError, match="returned out of shape"):
        bn(torch.zeros(3, 2, dtype=torch.float64), torch.ones(2, dtype=torch.float64),
           torch.zeros(2, dtype=torch.float64), {})


# --- experiments ---------------------------------------------------------------------------------
def test_train_grid_shapes_and_stacking_is_exact(small_data):
    grid = bn_lab.train_grid(FORWARD, BACKWARD, small_data, [0.03, 0.3], [0.5, 1.0],
                             hidden=(16, 16), steps=30, batch_size=16)
    assert grid.train_loss.shape == grid.test_accuracy.shape == (2, 2)
    assert grid.losses.shape == (2, 2, 30) and grid.batch_norm
    alone = bn_lab.train_grid(FORWARD, BACKWARD, small_data, [0.3], [1.0], hidden=(16, 16),
                              steps=30, batch_size=16)
    np.testing.assert_allclose(alone.losses[0, 0], grid.losses[1, 1], rtol=1e-5)
    assert np.all((grid.test_accuracy >= 0) & (grid.test_accuracy <= 1))


def test_train_grid_without_batch_norm_needs_no_learner_function(small_data):
    grid = bn_lab.train_grid(not_implemented, not_implemented, small_data, [0.1, 1000.0],
                             [1.0], batch_norm=False, hidden=(16,), steps=20, batch_size=16)
    assert np.isfinite(grid.train_loss[0, 0]) and np.isnan(grid.train_loss[0, 1])
    fig, ax = plotting.new_figure()
    bn_lab.plot_grid(ax, grid)
    assert [t.get_text() for t in ax.texts][-1] == "div."


def test_record_activations_with_batch_norm_is_standardized(small_data):
    record = bn_lab.record_activations(FORWARD, BACKWARD, small_data, batch_norm=True,
                                       hidden=(16, 16), steps=20, every=5, batch_size=32)
    assert record.steps.tolist() == [0, 5, 10, 15]
    assert record.linear.shape == record.relu_input.shape == (4, 2, 32 * 16)
    np.testing.assert_allclose(record.relu_input[0].std(axis=1), 1.0, atol=1e-3)


def test_gradient_check_and_demos_with_the_reference():
    rng = np.random.default_rng(7)

    def numerical_gradient(f, x, h=1e-5):
        x = np.array(x, dtype=np.float64)
        grad = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            old = x[i]
            x[i] = old + h
            up = f(x)
            x[i] = old - h
            down = f(x)
            x[i] = old
            grad[i] = (up - down) / (2 * h)
        return grad

    errors = bn_lab.batchnorm_gradient_check(FORWARD, BACKWARD, numerical_gradient,
                                             rng.normal(size=(5, 3)), rng.normal(size=3),
                                             rng.normal(size=3), rng.normal(size=(5, 3)))
    assert max(errors.values()) < 1e-7
    wrong = bn_lab.batchnorm_gradient_check(FORWARD, backward_mistake("no_mean_path"),
                                            numerical_gradient, rng.normal(size=(5, 3)),
                                            rng.normal(size=3), rng.normal(size=3),
                                            rng.normal(size=(5, 3)))
    assert wrong["dx"] > 1e-3
    assert bn_lab.identity_error(FORWARD, rng.normal(3, 2, size=(9, 4))) < 1e-12
    demo = bn_lab.inference_demo(FORWARD, rng.normal(size=(100, 5)), batch_size=10)
    assert demo["train_batch_effect"] > 0.01
    assert demo["train_alone_error"] == "ValueError"  # torch refuses a training batch of one
    assert demo["eval_batch_effect"] == demo["eval_alone_effect"] == 0.0


def test_memory_table_counts_the_cache():
    rows = bn_lab.memory_table(FORWARD, [(32, 16)])
    (row,) = rows
    assert row["activation"] == 32 * 16 * 4
    assert row["cache"] == (2 * 32 * 16 + 3 * 16) * 8  # the reference caches float64 arrays
    assert row["torch_bn"] == 32 * 16 * 4 + 2 * 16 * 4  # input, mean and 1/std
    linear = torch.nn.Linear(16, 8)
    assert bn_lab.torch_saved_bytes(linear, torch.zeros(32, 16)) == 32 * 16 * 4
    x = np.zeros((4, 3))
    assert bn_lab.cache_nbytes({"a": x, "b": (x, np.zeros(2))}) == x.nbytes + 16
    assert bn_lab.cache_nbytes({"a": x[1:], "b": np.zeros(2)}, exclude=(x,)) == 16


# --- the explorer --------------------------------------------------------------------------------
def test_explorer_redraws_on_every_control(small_data):
    explorer = bn_widgets.ActivationHistogramExplorer(
        FORWARD, BACKWARD, small_data, init_scales=(0.5, 2.0), init_scale=2.0, steps=20,
        every=5, hidden=(16, 16))
    assert explorer.messages == [] and explorer.redraw_count == 1
    left, right = explorer.figure.axes[:2]
    assert "without" in left.get_title() and "step 0" in right.get_title()
    before = bytes(explorer.image.value)
    explorer.step.value = 15
    assert explorer.redraw_count == 2 and "step 15" in explorer.figure.axes[1].get_title()
    assert bytes(explorer.image.value) != before
    explorer.scale.value = 0.5
    assert len(explorer.runs) == 4 and explorer.redraw_count == 3
    explorer.show.value = "output of the linear layer"
    assert "linear" in explorer.figure.axes[1].get_title()
    stds = [float(t.get_text().split("std ")[1]) for t in
            explorer.figure.axes[1].get_legend().get_texts()]
    assert len(stds) == 2


def test_explorer_says_what_to_implement(small_data):
    explorer = bn_widgets.ActivationHistogramExplorer(
        not_implemented, not_implemented, small_data, steps=10, every=5, hidden=(8,))
    assert explorer.messages == ["with batch norm: implement `not_implemented` first"]
    assert "without" in explorer.figure.axes[0].get_title()
    bundle = explorer._repr_mimebundle_()
    assert "image/png" in bundle and "implement" in bundle["text/plain"]

    explorer = bn_widgets.ActivationHistogramExplorer(
        FORWARD, not_implemented, small_data, steps=10, every=5, hidden=(8,))
    assert explorer.messages == ["with batch norm: implement `not_implemented` first"]
