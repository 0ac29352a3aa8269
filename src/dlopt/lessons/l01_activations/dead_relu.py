"""Lesson 01: dead ReLUs, units whose output is 0 for every example of a data set.

A dead unit's ReLU derivative is 0 on every example, so no gradient reaches its weights and
gradient descent cannot bring it back. Two experiments count them, using the learner's own
``relu`` (and ``relu_grad`` for training, through
:func:`dlopt.kit.torch_bridge.numpy_activation`):

- :func:`dead_fraction_vs_bias`: one layer at initialization, all biases shifted down;
- :func:`dead_fraction_vs_lr`: a small MLP after a short SGD run, one run per learning rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from dlopt.kit.threads import cpu_threads
from dlopt.kit.torch_bridge import numpy_activation
from dlopt.lessons.l01_activations.vanishing import init_mlp, init_weight

__all__ = ["LRSweep", "dead_fraction", "dead_fraction_vs_bias", "dead_fraction_vs_lr"]


def dead_fraction(hidden: np.ndarray) -> float:
    """Share of units (columns) that are 0 for every example (row).

    Parameters
    ----------
    hidden : ndarray, shape (n_examples, n_units)
        Outputs of a ReLU layer on a whole data set.

    Returns
    -------
    float in [0, 1]
    """
    hidden = np.asarray(hidden)
    if hidden.ndim != 2 or hidden.shape[0] == 0:
        raise ValueError(f"hidden must have shape (n_examples, n_units), got {hidden.shape}")
    return float(np.mean(np.all(hidden == 0, axis=0)))


def dead_fraction_vs_bias(relu: Callable, X: np.ndarray, shifts: Sequence[float], *,
                          width: int = 128, seed: int = 0) -> np.ndarray:
    """Dead units of one He-initialized ReLU layer when every bias is set to ``shift``.

    Parameters
    ----------
    relu : callable
        The learner's ReLU, elementwise on NumPy arrays.
    X : ndarray, shape (n_examples, n_features)
        The data set (e.g. standardized digits).
    shifts : sequence of float
        Bias values to try (negative values push pre-activations below 0).
    width : int
        Number of units.
    seed : int
        Seed of the weights; every shift uses the same weights.

    Returns
    -------
    ndarray, shape (len(shifts),)
        Dead fraction for each shift.
    """
    X = np.asarray(X, dtype=np.float64)
    W = init_weight("he", X.shape[1], width, torch.Generator().manual_seed(seed)).numpy()
    pre = X @ W
    return np.array([dead_fraction(relu(pre + shift)) for shift in shifts])


class LRSweep(NamedTuple):
    """Results of :func:`dead_fraction_vs_lr`, one entry per learning rate.

    Attributes
    ----------
    lrs : ndarray, shape (k,)
    dead_fraction : ndarray, shape (k,)
        Share of all hidden units that are dead on the training set after training.
    dead_per_layer : ndarray, shape (k, n_hidden_layers)
    train_loss : ndarray, shape (k,)
        Cross-entropy on the whole training set after training.
    test_accuracy : ndarray, shape (k,)
    """

    lrs: np.ndarray
    dead_fraction: np.ndarray
    dead_per_layer: np.ndarray
    train_loss: np.ndarray
    test_accuracy: np.ndarray


def _forward(params, act, X):
    hidden = []
    h = X
    for i in range(0, len(params) - 2, 2):
        h = act(h @ params[i] + params[i + 1])
        hidden.append(h)
    return h @ params[-2] + params[-1], hidden


@cpu_threads(1)  # small matrices: one thread is faster, and steady on a shared machine
def dead_fraction_vs_lr(relu: Callable, relu_grad: Callable, data, lrs: Sequence[float], *,
                        hidden: Sequence[int] = (64, 64), steps: int = 50,
                        batch_size: int = 64, clip_norm: float | None = 1.0,
                        seed: int = 0) -> LRSweep:
    """Train the same MLP with SGD at each learning rate; count dead units afterwards.

    The MLP is ``n_features -> hidden[0] -> ... -> n_classes`` with the learner's ReLU after
    every hidden layer, He-normal hidden weights, a Xavier-normal output layer and zero biases;
    the loss is torch's cross-entropy on logits. Every run starts from the same weights and
    sees the same mini-batches (both from ``seed``), so the learning rate is the only
    difference. Plain SGD (``torch.optim.SGD``, no momentum), after clipping the gradient's
    norm to ``clip_norm``: the clip keeps a large step finite so that dead units can be
    counted instead of overflowing to nan; it bounds every step's length by ``lr * clip_norm``.

    Parameters
    ----------
    relu, relu_grad : callable
        The learner's ReLU and its derivative, elementwise on NumPy arrays.
    data : DigitsSplit
        ``(X_train, X_test, y_train, y_test)``, e.g. :func:`dlopt.kit.data.load_digits_split`.
    lrs : sequence of float
        Learning rates, one training run each.
    hidden : sequence of int
        Widths of the hidden layers.
    steps : int
        SGD steps per run.
    batch_size : int
        Examples per mini-batch, drawn with replacement.
    clip_norm : float or None
        Largest gradient norm per step; None to switch clipping off.
    seed : int

    Returns
    -------
    LRSweep
    """
    X_train, X_test, y_train, y_test = (torch.as_tensor(np.asarray(a)) for a in data)
    X_train = X_train.to(torch.float64)
    X_test = X_test.to(torch.float64)
    sizes = [X_train.shape[1], *hidden, int(y_train.max()) + 1]
    act = numpy_activation(relu, relu_grad)
    batches = torch.randint(0, len(X_train), (steps, batch_size),
                            generator=torch.Generator().manual_seed(seed + 1))
    dead, per_layer, losses, accuracies = [], [], [], []
    for lr in lrs:
        params = init_mlp(sizes, seed)
        optimizer = torch.optim.SGD(params, lr=lr)
        for idx in batches:
            logits, _ = _forward(params, act, X_train[idx])
            loss = F.cross_entropy(logits, y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            optimizer.step()
        with torch.no_grad():
            logits, hiddens = _forward(params, act, X_train)
            losses.append(F.cross_entropy(logits, y_train).item())
            layers = [dead_fraction(h.numpy()) for h in hiddens]
            per_layer.append(layers)
            dead.append(float(np.average(layers, weights=hidden)))
            test_logits, _ = _forward(params, act, X_test)
            accuracies.append((test_logits.argmax(dim=1) == y_test).double().mean().item())
    return LRSweep(np.asarray(lrs, dtype=np.float64), np.array(dead), np.array(per_layer),
                   np.array(losses), np.array(accuracies))
