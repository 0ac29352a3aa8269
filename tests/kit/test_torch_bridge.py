"""dlopt.kit.torch_bridge: the one autograd bridge (NumPy or torch passes) and torch_update_rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlopt.kit.learner import LearnerError
from dlopt.kit.torch_bridge import autograd_function, numpy_activation


def _scaled_sum_layer():
    """``out = a * x + b`` (b broadcast), cached for backward; a plain float passes through."""

    def forward(x, b, scale):
        return scale * x + b, (x.shape[0], scale)

    def backward(dout, cache):
        n, scale = cache
        return scale * dout, dout.sum(axis=0)

    return autograd_function(forward, backward, name="ScaledSum", numpy=True,
                             input_names=("x", "b"))


def test_numpy_passes_get_arrays_and_return_gradients_of_each_tensor():
    layer = _scaled_sum_layer()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    out = layer.apply(x, b, 2.0)
    assert issubclass(layer, torch.autograd.Function) and layer.__name__ == "ScaledSum"
    torch.testing.assert_close(out, 2.0 * x + b)
    out.backward(torch.ones(4, 3, dtype=torch.float64))
    torch.testing.assert_close(x.grad, torch.full((4, 3), 2.0, dtype=torch.float64))
    torch.testing.assert_close(b.grad, torch.full((3,), 4.0, dtype=torch.float64))


def test_results_take_the_inputs_dtype_and_gradcheck_can_backpropagate_twice():
    layer = _scaled_sum_layer()
    x = torch.randn(2, 3, dtype=torch.float32)
    assert layer.apply(x, torch.zeros(3), 1.5).dtype == torch.float32
    inputs = (torch.randn(3, 2, dtype=torch.float64, requires_grad=True),
              torch.randn(2, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(lambda a, c: layer.apply(a, c, 3.0), inputs)


def test_wrong_shapes_and_counts_name_the_learners_function():
    def forward(x):
        return x[:1], None

    def my_backward(dout, cache):
        return dout, dout

    bad_out = autograd_function(forward, my_backward, numpy=True)
    with pytest.raises(LearnerError, match="`forward` returned out of shape"):
        bad_out.apply(torch.zeros(2, 2, dtype=torch.float64))
    too_many = autograd_function(lambda x: (x, None), my_backward, numpy=True)
    t = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(LearnerError, match="`my_backward` returned 2 gradients for 1 inputs"):
        too_many.apply(t).sum().backward()
    no_pair = autograd_function(lambda x: x, my_backward, numpy=True)
    with pytest.raises(LearnerError, match=r"must return a pair \(out, cache\)"):
        no_pair.apply(t)


def test_torch_passes_keep_their_tensors_for_backward():
    def forward(x):
        y = torch.sin(x)
        return y, (x, y)

    def backward(grad_output, cache):
        x, _ = cache
        return 2 * grad_output * torch.cos(x)

    twice = autograd_function(forward, backward, name="Twice")
    x = torch.linspace(-1, 1, 4, dtype=torch.float64, requires_grad=True)
    twice.apply(x).sum().backward()
    torch.testing.assert_close(x.grad, 2 * torch.cos(x.detach()))


def test_numpy_activation_uses_f_grad_and_refuses_a_wrong_derivative_shape():
    act = numpy_activation(np.tanh, lambda x: np.ones(1))
    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(LearnerError, match="returned f'\\(x\\) of shape"):
        act(t).sum().backward()
    assert act.__name__ == "tanh"
