"""Lesson 01: vanishing gradients, each layer's gradient in a deep stack at initialization.

A stack of ``depth`` square linear layers of width ``width``, each followed by the same
activation, is fed a batch of standard-normal inputs. A random upstream gradient enters at
the top and torch backpropagates it; the activation's forward and derivative are the
learner's own (:func:`dlopt.kit.torch_bridge.numpy_activation`). The result is the Frobenius
norm of the gradient of every layer's weight matrix, from the input layer to the output layer.
The weight initializers (:func:`init_weight`, :func:`init_mlp`) are shared with the training
experiments of lessons 05 and 07.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from dlopt.kit.learner import run_each
from dlopt.kit.torch_bridge import numpy_activation

__all__ = ["INITS", "compare_activations", "init_mlp", "init_weight", "layer_gradient_norms"]

#: Weight initializations: name -> description (both drawn by torch.nn.init).
INITS = {
    "xavier": "Glorot/Xavier normal (torch.nn.init.xavier_normal_)",
    "he": "He/Kaiming normal for ReLU (torch.nn.init.kaiming_normal_)",
}


def init_weight(init: str, fan_in: int, fan_out: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """A float64 weight matrix of shape (fan_in, fan_out), for ``h @ W``, drawn by torch.

    Parameters
    ----------
    init : {"xavier", "he"}
        ``torch.nn.init.xavier_normal_`` or ``torch.nn.init.kaiming_normal_`` (fan_in mode,
        ReLU gain); see :data:`INITS`.
    fan_in, fan_out : int
    generator : torch.Generator, optional
        Source of randomness, for reproducible weights.

    Returns
    -------
    torch.Tensor, shape (fan_in, fan_out), float64
    """
    weight = torch.empty(fan_out, fan_in, dtype=torch.float64)  # torch's (out, in) layout
    if init == "xavier":
        torch.nn.init.xavier_normal_(weight, generator=generator)
    elif init == "he":
        torch.nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=generator)
    else:
        raise ValueError(f"unknown init {init!r}; choose one of {sorted(INITS)}")
    return weight.T.contiguous()


def init_mlp(sizes, seed: int) -> list[torch.Tensor]:
    """Parameters [W1, b1, W2, b2, ...] of an MLP with layer ``sizes``, float64, trainable.

    He initialization before each ReLU layer, Xavier at the output; biases zero.
    """
    gen = torch.Generator().manual_seed(seed)
    params = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        init = "he" if i < len(sizes) - 2 else "xavier"
        params += [init_weight(init, fan_in, fan_out, gen).requires_grad_(),
                   torch.zeros(fan_out, dtype=torch.float64, requires_grad=True)]
    return params


def layer_gradient_norms(f: Callable, f_grad: Callable, *, depth: int = 20, width: int = 64,
                         batch_size: int = 128, init: str = "xavier",
                         seed: int = 0) -> np.ndarray:
    """Norm of the loss gradient for each weight matrix of a deep stack at initialization.

    The network is ``h_0 = X``, ``h_l = f(h_{l-1} @ W_l)`` for ``l = 1..depth``, without
    biases (zero biases would not change anything at initialization). The loss is
    ``sum(h_depth * G) / batch_size`` for a fixed standard-normal ``G``: it sends a random
    upstream gradient of the same size into the top layer, whatever the activation.

    Parameters
    ----------
    f, f_grad : callable
        The activation and its derivative, elementwise on NumPy arrays.
    depth : int
        Number of layers (each a ``width x width`` matrix followed by ``f``).
    width : int
        Units per layer.
    batch_size : int
        Number of standard-normal input rows.
    init : {"xavier", "he"}
        Weight initialization, see :data:`INITS`.
    seed : int
        Seed for inputs, weights and ``G``: every activation gets the same ones.

    Returns
    -------
    ndarray, shape (depth,)
        ``||dL/dW_l||`` (Frobenius norm) for ``l = 1..depth``; index 0 is the layer next to
        the input.
    """
    if depth < 1 or width < 1 or batch_size < 1:
        raise ValueError("depth, width and batch_size must be positive")
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(batch_size, width, generator=gen, dtype=torch.float64)
    weights = [init_weight(init, width, width, gen).requires_grad_() for _ in range(depth)]
    upstream = torch.randn(batch_size, width, generator=gen, dtype=torch.float64)
    act = numpy_activation(f, f_grad)
    h = X
    for W in weights:
        h = act(h @ W)
    loss = (h * upstream).sum() / batch_size
    loss.backward()
    return np.array([W.grad.norm().item() for W in weights])


def compare_activations(activations: Mapping[str, tuple[Callable, Callable]],
                        **kwargs) -> tuple[dict[str, np.ndarray], list[str]]:
    """:func:`layer_gradient_norms` for each activation that is implemented.

    Parameters
    ----------
    activations : mapping of str to (f, f_grad)
    **kwargs
        Passed to :func:`layer_gradient_norms` (``depth``, ``width``, ``init``, ...).

    Returns
    -------
    norms : dict of str to ndarray of shape (depth,)
    messages : list of str
        One per activation that was skipped, e.g. "relu: implement `relu_grad` first".
    """
    return run_each(activations, lambda f, f_grad: layer_gradient_norms(f, f_grad, **kwargs))
