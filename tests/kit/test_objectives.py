"""dlopt.kit.objectives: values and analytic gradients agree with torch autograd.

The analytic gradients are the trusted reference of lesson 01's gradient checker, so each one
is compared with autograd of an independent torch formula, for single points and batches.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlopt.grading import codec
from dlopt.kit import objectives as obj


def _rosenbrock_t(x, a=1.0, b=100.0):
    return (b * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (a - x[..., :-1]) ** 2).sum(-1)


def _himmelblau_t(x):
    return (x[..., 0] ** 2 + x[..., 1] - 11) ** 2 + (x[..., 0] + x[..., 1] ** 2 - 7) ** 2


H3 = np.array([[2.0, 1.0, 0.0], [-0.5, 3.0, 0.2], [0.0, 0.4, 1.0]])  # deliberately not symmetric
B3 = np.array([1.0, -2.0, 0.5])

# name, numpy f, gradient, torch formula (summing over the point axis), kwargs, point shape
POINT_FUNCTIONS = [
    ("rosenbrock 2-D", obj.rosenbrock, obj.rosenbrock_grad, _rosenbrock_t, {}, (2,)),
    ("rosenbrock 5-D, a=2, b=10", obj.rosenbrock, obj.rosenbrock_grad,
     lambda x: _rosenbrock_t(x, 2.0, 10.0), {"a": 2.0, "b": 10.0}, (5,)),
    ("himmelblau", obj.himmelblau, obj.himmelblau_grad, _himmelblau_t, {}, (2,)),
    ("quadratic, identity", obj.quadratic, obj.quadratic_grad, lambda x: 0.5 * (x * x).sum(-1),
     {}, (4,)),
    ("quadratic, H and b", obj.quadratic, obj.quadratic_grad,
     lambda x: 0.5 * torch.einsum("...i,ij,...j->...", x, torch.tensor(H3), x)
     - x @ torch.tensor(B3), {"H": H3, "b": B3}, (3,)),
]


def _autograd(torch_f, x):
    t = torch.tensor(x, requires_grad=True)
    value = torch_f(t)
    value.sum().backward()
    return value.detach().numpy(), t.grad.numpy()


@pytest.mark.parametrize("name,f,grad,torch_f,kwargs,shape", POINT_FUNCTIONS,
                         ids=[p[0] for p in POINT_FUNCTIONS])
@pytest.mark.parametrize("batch", [(), (7,), (3, 4)], ids=["point", "batch", "grid"])
def test_point_functions_match_autograd(name, f, grad, torch_f, kwargs, shape, batch):
    x = np.random.default_rng(0).normal(0, 2, size=batch + shape)
    value, expected_grad = _autograd(torch_f, x)
    assert np.shape(f(x, **kwargs)) == batch
    np.testing.assert_allclose(f(x, **kwargs), value, rtol=1e-12)
    assert grad(x, **kwargs).shape == x.shape
    np.testing.assert_allclose(grad(x, **kwargs), expected_grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("f,grad,torch_f", [
    (obj.sum_of_sines, obj.sum_of_sines_grad, lambda x: torch.sin(x).sum()),
    (obj.wavy_bowl, obj.wavy_bowl_grad, lambda x: 0.5 * (x * x).sum() + torch.sin(x.sum())),
], ids=["sum_of_sines", "wavy_bowl"])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2)])
def test_array_functions_return_one_float_and_match_autograd(f, grad, torch_f, shape):
    x = np.random.default_rng(1).normal(0, 1.5, size=shape)
    value, expected_grad = _autograd(torch_f, x)
    assert type(f(x)) is float
    assert f(x) == pytest.approx(float(value), rel=1e-12)
    np.testing.assert_allclose(grad(x), expected_grad, rtol=1e-12, atol=1e-14)


def test_wavy_bowl_is_not_separable():
    # a gradient checker that perturbs all coordinates at once must fail on it
    x = np.array([[0.5, -1.0], [2.0, 0.3]])
    moved = x.copy()
    moved[1, 1] += 0.5
    assert not np.allclose(obj.wavy_bowl_grad(x)[0, 0], obj.wavy_bowl_grad(moved)[0, 0])


@pytest.mark.parametrize("f,grad,x_min", [
    (obj.rosenbrock, obj.rosenbrock_grad, np.array([1.0, 1.0, 1.0])),
    (obj.himmelblau, obj.himmelblau_grad, np.array([3.0, 2.0])),
    (obj.quadratic, obj.quadratic_grad, np.zeros(3)),
])
def test_known_minima(f, grad, x_min):
    assert f(x_min) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(grad(x_min), 0.0, atol=1e-12)


def test_quadratic_minimum_moves_with_b():
    H = np.array([[3.0, 1.0], [1.0, 2.0]])
    b = np.array([1.0, -1.0])
    x_star = np.linalg.solve(H, b)
    np.testing.assert_allclose(obj.quadratic_grad(x_star, H, b), 0.0, atol=1e-12)


def test_analytic_gradient_finds_every_gradient():
    for f, grad in [(obj.quadratic, obj.quadratic_grad), (obj.rosenbrock, obj.rosenbrock_grad),
                    (obj.himmelblau, obj.himmelblau_grad),
                    (obj.sum_of_sines, obj.sum_of_sines_grad), (obj.wavy_bowl, obj.wavy_bowl_grad)]:
        assert obj.analytic_gradient(f) is grad
    with pytest.raises(KeyError, match="rosenbrock"):
        obj.analytic_gradient(np.sin)
    with pytest.raises(KeyError):
        obj.analytic_gradient([1, 2])  # unhashable


def test_bad_shapes_are_refused_with_a_message():
    with pytest.raises(ValueError, match="at least 2"):
        obj.rosenbrock(np.array([1.0]))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        obj.himmelblau(np.zeros(3))
    with pytest.raises(ValueError, match="H must be"):
        obj.quadratic(np.zeros(3), H=np.eye(2))
    with pytest.raises(ValueError, match="at least one axis"):
        obj.rosenbrock(np.float64(1.0))


def test_inputs_are_not_modified():
    x = np.array([[-1.2, 1.0], [0.5, 0.5]])
    before = x.copy()
    for f in (obj.rosenbrock, obj.rosenbrock_grad, obj.himmelblau, obj.himmelblau_grad,
              obj.quadratic, obj.quadratic_grad, obj.wavy_bowl_grad, obj.sum_of_sines_grad):
        f(x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("name", obj.__all__)
def test_functions_travel_as_plain_data(name):
    # gradient-check scenarios pass these functions as arguments: the grader must decode them
    f = getattr(obj, name)
    assert codec.decode(codec.encode(f)) is f


@pytest.mark.parametrize("name,kwargs,shape", [
    ("rosenbrock", {"a": 2.0, "b": 10.0}, (3, 4)), ("himmelblau", {}, (5, 2)),
    ("quadratic", {"H": H3, "b": B3}, (2, 3)), ("sum_of_sines", {}, (2, 3)),
    ("wavy_bowl", {}, (3, 2))])
def test_the_same_functions_take_torch_tensors_and_keep_autograd(name, kwargs, shape):
    f = getattr(obj, name)
    x = np.random.default_rng(2).normal(size=shape)
    t = torch.tensor(x, requires_grad=True)
    value = f(t, **kwargs)
    assert isinstance(value, torch.Tensor) and value.dtype == torch.float64
    np.testing.assert_allclose(value.detach().numpy(), f(x, **kwargs), rtol=1e-13)
    value.sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), obj.analytic_gradient(f)(x, **kwargs),
                               rtol=1e-11, atol=1e-12)


def test_lesson_08_names_the_same_functions():
    from dlopt.kit import torch_objectives

    for name in torch_objectives.__all__:
        assert getattr(torch_objectives, name) is getattr(obj, name)
