"""Lesson 08's helper modules: torch_objectives, torch_variants, torch_drivers, torch_lab.

The drivers must report plain data only, leave torch's global settings (threads, random
generators, ``torch._foreach_*``) as they found them, and make a ``state_dict`` round trip exact
for torch's own optimizers. Each wrong variant must be wrong in exactly the advertised way.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlopt.grading import codec, compare
from dlopt.grading.drivers import torch_modules
from dlopt.kit import objectives, plotting, torch_objectives
from dlopt.kit.timing import Timing
from dlopt.lessons.l08_pytorch_from_numpy import torch_lab
from dlopt_instructor import torch_variants as V

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _same(actual, expected, rtol=1e-12, atol=1e-14):
    problem = compare(actual, expected, rtol, atol)
    assert not problem, problem


# --- torch_objectives ------------------------------------------------------------------------
@pytest.mark.parametrize("name,shape", [("rosenbrock", (4,)), ("himmelblau", (2,)),
                                        ("sum_of_sines", (2, 3)), ("wavy_bowl", (3, 2)),
                                        ("quadratic", (5,))])
def test_torch_objectives_equal_their_numpy_twins(name, shape):
    x = np.random.default_rng(0).normal(size=shape)
    t = torch.tensor(x, requires_grad=True)
    value = getattr(torch_objectives, name)(t)
    value.backward()
    twin = getattr(objectives, name)
    assert value.shape == () and value.dtype == torch.float64
    np.testing.assert_allclose(value.item(), twin(x), rtol=1e-13)
    np.testing.assert_allclose(t.grad.numpy(), objectives.analytic_gradient(twin)(x), rtol=1e-12)


# --- torch_variants --------------------------------------------------------------------------
def test_function_variant_and_torch_function():
    x = torch.linspace(-2, 2, 5, dtype=torch.float64, requires_grad=True)
    twice = V.function_variant(torch.sin, lambda x, y, g: 2 * g * torch.cos(x), name="Twice")
    assert issubclass(twice, torch.autograd.Function) and twice.__name__ == "Twice"
    twice.apply(x).sum().backward()
    torch.testing.assert_close(x.grad, 2 * torch.cos(x.detach()))
    assert V.TorchFunction(torch.sigmoid).apply(x).equal(torch.sigmoid(x))
    assert V.TorchFunction(torch.sigmoid).__name__ == "sigmoid"


def test_forgets_grad_output_keeps_the_forward_and_fails_gradcheck():
    from dlopt.lessons.l08_pytorch_from_numpy import function_lab

    wrong = function_lab.forgets_grad_output(V.TorchFunction(torch.sigmoid))
    assert issubclass(wrong, torch.autograd.Function)
    assert wrong.__name__ == "sigmoidWithoutGradOutput"
    x = torch.linspace(-2, 2, 5, dtype=torch.float64, requires_grad=True)
    y = wrong.apply(x)
    torch.testing.assert_close(y, torch.sigmoid(x))
    (3 * y).sum().backward()  # grad_output 3 is forgotten: the local derivative alone
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(x.grad, s * (1 - s))
    results = torch_lab.gradcheck_functions({"sigmoid": torch.sigmoid, "wrong": wrong.apply})
    assert results == {"sigmoid": True, "wrong": False}


def _bn_grads(apply, x, g, b, dy, eps=1e-5):
    x, g, b = (t.clone().requires_grad_(True) for t in (x, g, b))
    y = apply(x, g, b, eps)
    y.backward(dy)
    return y.detach(), x.grad, g.grad, b.grad


def test_batch_norm_function_mistakes_are_the_advertised_ones():
    gen = torch.Generator().manual_seed(0)
    x, dy = (torch.randn(7, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    g, b = torch.rand(3, dtype=torch.float64) + 0.5, torch.randn(3, dtype=torch.float64)
    y, dx, dg, db = _bn_grads(V.TorchBatchNorm.apply, x, g, b, dy)
    x_hat = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(y, g * x_hat + b)
    swapped = _bn_grads(V.batch_norm_function_mistake("swapped_gamma_beta").apply, x, g, b, dy)
    torch.testing.assert_close(swapped[0], y)
    torch.testing.assert_close(swapped[1], dx)
    torch.testing.assert_close(swapped[2], db)
    torch.testing.assert_close(swapped[3], dg)
    constant = _bn_grads(V.batch_norm_function_mistake("statistics_constant").apply, x, g, b, dy)
    torch.testing.assert_close(constant[1], dy * g / torch.sqrt(x.var(0, unbiased=False) + 1e-5))
    unbiased = _bn_grads(V.batch_norm_function_mistake("unbiased_variance").apply, x, g, b, dy)
    assert not torch.allclose(unbiased[0], y)
    variance = _bn_grads(V.batch_norm_function_mistake("variance_constant").apply, x, g, b, dy)
    torch.testing.assert_close(variance[0], y)
    assert not torch.allclose(variance[1], dx) and not torch.allclose(variance[1], constant[1])
    with pytest.raises(ValueError, match="unknown mistake"):
        V.batch_norm_function_mistake("nope")


def test_batch_norm_module_variants():
    x = torch.randn(6, 3, dtype=torch.float64) * 3 + 1
    biased = V.BiasedRunningVar(3, momentum=0.5).double()
    biased(x)
    torch.testing.assert_close(biased.running_var, 0.5 + 0.5 * x.var(0, unbiased=False))
    torch.testing.assert_close(biased.running_mean, 0.5 * x.mean(0))
    reversed_ = V.momentum_reversed()(3, momentum=0.1).double()
    assert math.isclose(reversed_.momentum, 0.9)
    frozen = V.RunningStatisticsNeverUpdated(3).double()
    frozen(x)
    assert frozen.running_mean.eq(0).all() and frozen.running_var.eq(1).all()
    in_eval = V.EvalUsesBatchStatistics(3).double().eval()
    torch.testing.assert_close(in_eval(x), F.batch_norm(x, None, None, training=True))


def test_dropout_variants():
    x = torch.ones(400, 500)
    torch.manual_seed(0)
    unscaled = V.UnscaledDropout(0.5)(x)
    assert set(unscaled.unique().tolist()) == {0.0, 1.0}
    assert V.DropoutInEval(0.5).eval()(x).eq(0).any()
    keep = V.keep_probability()(0.2)
    assert math.isclose(keep.p, 0.8)


def _run(optimizer, steps=3, **kwargs):
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    opt = optimizer([{"params": [w]}, {"params": [v], "lr": 0.5}], lr=0.1, **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        ((w**2).sum() + (v**2).sum()).backward()
        opt.step()
    return w.detach(), v.detach(), opt


def test_optimizer_wrappers():
    _, _, opt = _run(V.ignores_group_lr(torch.optim.SGD))
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.1]
    _, _, opt = _run(V.with_hyperparameters(torch.optim.SGD, nesterov=False), momentum=0.9,
                     nesterov=True)
    assert opt.param_groups[0]["nesterov"] is False
    _, _, opt = _run(V.loses_state(torch.optim.Adam))
    assert opt.state and opt.state_dict()["state"] == {}
    w, v, _ = _run(V.never_updates(torch.optim.Adam))
    assert w.tolist() == [1.0, -2.0] and v.tolist() == [0.5]
    with pytest.raises(RuntimeError, match="leaf Variable"):
        _run(V.updates_with_autograd_on(torch.optim.SGD))
    _, _, opt = _run(V.decay_not_scaled_by_lr(), weight_decay=0.01)
    assert [g["weight_decay"] for g in opt.param_groups] == pytest.approx([0.1, 0.02])


# --- torch_drivers ---------------------------------------------------------------------------
def test_drivers_report_plain_data_and_restore_torch_settings():
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    foreach_add = torch._foreach_add_
    x = np.linspace(-2, 2, 6).reshape(2, 3)
    outputs = [
        torch_modules.run_function(V.TorchFunction(torch.tanh), x, x[::-1].copy()),
        torch_modules.run_batch_norm_function(V.TorchBatchNorm, x, np.ones(3), np.zeros(3), x),
        torch_modules.run_batch_norm_module(torch.nn.BatchNorm1d, 3),
        torch_modules.run_dropout(torch.nn.Dropout, 0.3, invalid=(-1.0,)),
        torch_modules.run_optimizer(torch.optim.Adam, {"lr": 0.01}, reload_at=10, closure=True,
                                    count_foreach=True, defaults=["lr", "betas"],
                                    invalid=[{"lr": -1.0}]),
    ]
    for out in outputs:
        codec.encode(out)  # raises on anything that is not plain data
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), state)
    assert torch._foreach_add_ is foreach_add
    adam = outputs[-1]
    assert adam["defaults"] == {"lr": 0.001, "betas": (0.9, 0.999)}  # the defaults
    assert adam["rejects"] == ["ValueError"] and adam["uses_torch_foreach"] is False
    assert adam["before_reload"].shape == (11, 29) and adam["after_reload"].shape == (40, 29)
    assert sorted(adam["state"]) == ["0", "1", "3", "4"]  # the frozen parameter has no state
    assert adam["state"]["0"]["step"] == 50.0 and adam["state_before_first_step"] == 0
    assert np.all(np.diff(adam["closure_losses"][:5]) < 0)


@pytest.mark.parametrize("name", ["SGD", "RMSprop", "Adam", "AdamW"])
def test_a_state_dict_round_trip_is_exact_for_torch(name):
    cls = getattr(torch.optim, name)
    hyper = {"lr": 0.01, "momentum": 0.9} if name in ("SGD", "RMSprop") else {"lr": 0.01}
    straight = torch_modules.run_optimizer(cls, hyper)
    for handoff in (None, "to_torch", "from_torch"):
        resumed = torch_modules.run_optimizer(cls, hyper, reload_at=20, handoff=handoff,
                                              twin=name)
        _same(np.concatenate([resumed["before_reload"], resumed["after_reload"]]),
              straight["params"], rtol=0, atol=0)


def test_run_optimizer_names_the_classic_errors():
    in_place = torch_modules.run_optimizer(V.updates_with_autograd_on(torch.optim.SGD),
                                           {"lr": 0.1}, reload_at=3)
    assert in_place == {"failure": torch_modules.IN_PLACE_WITH_AUTOGRAD, "before_reload": None,
                        "after_reload": None, "state": None, "state_before_first_step": None}
    no_grad = torch_modules.run_optimizer(V.closure_under_no_grad(torch.optim.SGD), {"lr": 0.1},
                                          closure=True, defaults=["lr"])
    assert no_grad["failure"] == torch_modules.CLOSURE_WITHOUT_GRAD
    assert no_grad["closure_losses"] is None and no_grad["defaults"] == {"lr": 0.001}
    assert "in place" in in_place["failure"] and "autograd off" in no_grad["failure"]
    ignored = torch_modules.run_optimizer(V.ignores_closure(torch.optim.SGD), {"lr": 0.1},
                                          closure=True, steps=3)
    assert np.isnan(ignored["closure_losses"]).all()
    with pytest.raises(ValueError, match="handoff"):
        torch_modules.run_optimizer(torch.optim.SGD, {"lr": 0.1}, reload_at=2, handoff="x")
    with pytest.raises(ValueError, match="no optimizer named"):
        torch_modules.run_optimizer(torch.optim.SGD, {"lr": 0.1}, reload_at=2,
                                    handoff="to_torch", twin="Nope")


def test_run_optimizer_counts_foreach_calls():
    foreach = torch_modules.run_optimizer(functools.partial(torch.optim.Adam, foreach=True),
                                          steps=2, count_foreach=True)
    loop = torch_modules.run_optimizer(functools.partial(torch.optim.Adam, foreach=False),
                                       steps=2, count_foreach=True)
    assert foreach["uses_torch_foreach"] and not loop["uses_torch_foreach"]


def test_run_dropout_statistics_of_torch():
    out = torch_modules.run_dropout(torch.nn.Dropout, 0.25, seed=3, invalid=(-0.5, 0.5))
    assert abs(out["zero_fraction"] - 0.25) < 0.02
    assert out["kept_scale"] == pytest.approx((4 / 3, 4 / 3))
    assert out["rejects"] == ["ValueError", "accepted"]
    assert all(out[k] for k in ("output_finite", "backward_uses_same_mask", "new_mask_each_call",
                                "input_unchanged", "eval_is_identity", "eval_grad_is_one"))
    everything = torch_modules.run_dropout(torch.nn.Dropout, 1.0)
    assert everything["zero_fraction"] == 1.0 and np.isnan(everything["kept_scale"]).all()


def test_drivers_let_not_implemented_through():
    class Stub(torch.optim.Optimizer):
        def __init__(self, params, lr=1e-3):
            raise NotImplementedError("replace this line with your code")

    with pytest.raises(NotImplementedError):
        torch_modules.run_optimizer(Stub, steps=0, invalid=[{"lr": -1.0}])


# --- torch_lab ---------------------------------------------------------------------------------
def test_missing_components_names_what_is_not_there():
    class Stub(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            raise NotImplementedError

    class Broken(torch.nn.Module):
        def __init__(self, p=0.5):
            raise TypeError("oops")

    messages = torch_lab.missing_components(
        ReLU=("activation", Stub), Dropout=("dropout", Broken),
        Adam=("optimizer", torch.optim.Adam), BN=("batch_norm", torch.nn.BatchNorm1d),
        BNF=("batch_norm_function", V.TorchBatchNorm))
    assert messages == ["implement `ReLU` first", "`Dropout` raised TypeError: oops"]
    with pytest.raises(ValueError):
        torch_lab._smoke("widget", None)


def test_gradcheck_functions_accepts_right_and_rejects_wrong():
    wrong = V.function_variant(torch.sigmoid, lambda x, s, g: s * (1 - s))
    results = torch_lab.gradcheck_functions({
        "relu": V.TorchFunction(torch.relu).apply, "wrong": wrong.apply,
        "batch": lambda x, g, b: V.TorchBatchNorm.apply(x, g, b, 1e-5)})
    assert results == {"relu": True, "wrong": False, "batch": True}


def test_train_digits_is_reproducible_and_learns():
    kwargs = {"epochs": 2, "hidden": 32}
    components = (V.TorchFunction(torch.relu), torch.nn.BatchNorm1d, torch.nn.Dropout,
                  torch.optim.Adam)
    threads = torch.get_num_threads()
    first = torch_lab.train_with_components(*components, label="a", **kwargs)
    second = torch_lab.train_with_components(*components, **kwargs)
    assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(first.train_loss, second.train_loss)
    assert first.label == "a" and second.label == "Adam" and first.device == "cpu"
    assert first.train_loss.shape == (2,) and first.test_accuracy[-1] > 0.6
    _, (ax_loss, ax_accuracy) = plotting.new_figure(1, 2)
    torch_lab.plot_component_runs(ax_loss, ax_accuracy, [first, second], messages=["note"])
    assert len(ax_loss.lines) == 2 and len(ax_accuracy.lines) == 2
    np.testing.assert_array_equal(ax_accuracy.lines[0].get_ydata(), first.test_accuracy)
    assert repr(torch_lab.FunctionModule(V.TorchFunction(torch.relu))) == "FunctionModule(relu)"


def test_time_optimizer_steps():
    timings = torch_lab.time_optimizer_steps({"sgd": torch.optim.SGD}, n_tensors=3, size=10,
                                             repeat=2, number=1)
    assert isinstance(timings["sgd"], Timing) and timings["sgd"].median > 0


@pytest.mark.gpu
@cuda
def test_time_optimizer_steps_on_cuda():
    timings = torch_lab.time_optimizer_steps({"adam": torch.optim.Adam}, n_tensors=3, size=10,
                                             device="cuda", repeat=2, number=1)
    assert timings["adam"].median > 0
