"""Lesson 02: train and check a two-layer MLP whose backward pass is the learner's.

The network of lesson 02 is ``logits = relu(X @ W1 + b1) @ W2 + b2`` with the mean
cross-entropy loss. The learner writes ``loss, grads = loss_and_grads(params, X, y)``; this
module never computes a gradient itself:

- :func:`train_mlp` runs mini-batch training with the learner's gradients and
  ``torch.optim.SGD`` for the update (update rules are lesson 03's topic);
- :func:`mlp_gradient_check` compares the learner's gradients with the learner's own central
  difference (passed in as ``numerical_gradient``), parameter by parameter;
- :func:`init_mlp_params` draws starting weights with ``torch.nn.init``, :func:`predict`
  and :func:`mlp_accuracy` run the forward pass in torch;
- :func:`plot_training` draws a :class:`TrainingHistory`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from dlopt.kit.learner import function_name
from dlopt.kit.plotting import show_messages
from dlopt.kit.threads import cpu_threads
from dlopt.lessons.l01_activations.gradcheck import relative_error
from dlopt.lessons.l01_activations.vanishing import init_weight

__all__ = [
    "MLP_KEYS",
    "TrainingHistory",
    "mlp_accuracy",
    "mlp_gradient_check",
    "init_mlp_params",
    "plot_training",
    "predict",
    "train_mlp",
]

#: Parameter names of the two-layer MLP, in order: ``X @ W1 + b1 -> ReLU -> @ W2 + b2``.
MLP_KEYS = ("W1", "b1", "W2", "b2")


def init_mlp_params(n_in: int, n_hidden: int, n_out: int, seed: int = 0) -> dict:
    """Starting parameters of the two-layer MLP, drawn by ``torch.nn.init``.

    ``W1`` is He-normal (it feeds a ReLU), ``W2`` Xavier-normal, both biases zero; see
    :func:`dlopt.lessons.l01_activations.vanishing.init_weight`.

    Returns
    -------
    dict
        ``W1`` (n_in, n_hidden), ``b1`` (n_hidden,), ``W2`` (n_hidden, n_out), ``b2``
        (n_out,), float64 NumPy arrays.
    """
    gen = torch.Generator().manual_seed(seed)
    return {
        "W1": init_weight("he", n_in, n_hidden, gen).numpy(),
        "b1": np.zeros(n_hidden),
        "W2": init_weight("xavier", n_hidden, n_out, gen).numpy(),
        "b2": np.zeros(n_out),
    }


def predict(params: dict, X: np.ndarray) -> np.ndarray:
    """Class indices ``argmax(relu(X @ W1 + b1) @ W2 + b2)``, computed by torch, shape (N,)."""
    p = {k: torch.as_tensor(np.asarray(params[k], dtype=np.float64)) for k in MLP_KEYS}
    X = torch.as_tensor(np.asarray(X, dtype=np.float64))
    with cpu_threads(1):
        logits = torch.relu(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
        return logits.argmax(dim=1).numpy()


def mlp_accuracy(params: dict, X: np.ndarray, y: np.ndarray) -> float:
    """Share of the examples whose predicted class (:func:`predict`) is ``y``."""
    return float(np.mean(predict(params, X) == np.asarray(y)))


class TrainingHistory(NamedTuple):
    """What :func:`train_mlp` measured after every epoch.

    Attributes
    ----------
    train_loss : ndarray, shape (epochs,)
        Mean of the mini-batch losses the learner's function returned during the epoch.
    train_accuracy, test_accuracy : ndarray, shape (epochs,)
        Accuracy on the whole training and test sets at the end of the epoch.
    params : dict
        The parameters after the last epoch.
    seconds : float
        Wall-clock time of the training loop.
    """

    train_loss: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    params: dict
    seconds: float


def _checked_grads(name: str, result, params: dict, step: int) -> tuple[float, dict]:
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise ValueError(f"`{name}` must return a pair (loss, grads) with grads a dict; got "
                         f"{type(result).__name__} at step {step}")
    loss, grads = result
    missing = [k for k in MLP_KEYS if k not in grads]
    if missing:
        raise ValueError(f"`{name}` returned grads without the key(s) {missing}")
    out = {}
    for k in MLP_KEYS:
        g = np.asarray(grads[k], dtype=np.float64)
        if g.shape != params[k].shape:
            raise ValueError(f"`{name}` returned grads[{k!r}] of shape {g.shape}; expected "
                             f"{params[k].shape}, the shape of params[{k!r}]")
        out[k] = g
    return float(loss), out


def train_mlp(loss_and_grads: Callable, data, *, hidden: int = 64, epochs: int = 20,
              lr: float = 0.1, batch_size: int = 64, seed: int = 0,
              params: dict | None = None) -> TrainingHistory:
    """Mini-batch training of the two-layer MLP with the learner's gradients.

    Each epoch visits the training set once in a random order (from ``seed``), in batches of
    ``batch_size``. For each batch the learner's ``loss_and_grads(params, X_batch, y_batch)``
    returns the mean loss and the gradients, and ``torch.optim.SGD(lr=lr)`` updates the
    parameters. Nothing here differentiates: a wrong gradient trains badly, or not at all.

    Parameters
    ----------
    loss_and_grads : callable
        ``loss, grads = loss_and_grads(params, X, y)`` with ``grads`` a dict with the keys and
        shapes of ``params`` (W1, b1, W2, b2). It receives copies: changing them has no effect.
    data : DigitsSplit
        ``(X_train, X_test, y_train, y_test)``, e.g. :func:`dlopt.kit.data.load_digits_split`.
    hidden : int
        Hidden units (ignored when ``params`` is given).
    epochs, batch_size : int
    lr : float
        Learning rate of SGD.
    seed : int
        Seed of the initial weights (:func:`init_mlp_params`) and of the batch order.
    params : dict, optional
        Starting parameters instead of :func:`init_mlp_params` (copied, not changed).

    Returns
    -------
    TrainingHistory

    Raises
    ------
    ValueError
        If the learner's function returns something other than ``(loss, grads)`` with the
        right keys and shapes.
    """
    X_train, X_test, y_train, y_test = (np.asarray(a) for a in data)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    if params is None:
        params = init_mlp_params(X_train.shape[1], hidden, n_classes, seed)
    tensors = {k: torch.tensor(np.asarray(params[k], dtype=np.float64), requires_grad=True)
               for k in MLP_KEYS}
    optimizer = torch.optim.SGD(list(tensors.values()), lr=lr)
    rng = np.random.default_rng(seed)
    name = function_name(loss_and_grads)
    losses, train_acc, test_acc = [], [], []
    step = 0
    start = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(y_train))
        batch_losses = []
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            current = {k: t.detach().numpy().copy() for k, t in tensors.items()}
            step += 1
            loss, grads = _checked_grads(
                name, loss_and_grads(current, X_train[idx], y_train[idx]), current, step)
            batch_losses.append(loss)
            for k, t in tensors.items():
                t.grad = torch.from_numpy(grads[k])
            with cpu_threads(1):
                optimizer.step()
        current = {k: t.detach().numpy().copy() for k, t in tensors.items()}
        losses.append(float(np.mean(batch_losses)))
        train_acc.append(mlp_accuracy(current, X_train, y_train))
        test_acc.append(mlp_accuracy(current, X_test, y_test))
    seconds = time.perf_counter() - start
    return TrainingHistory(np.array(losses), np.array(train_acc), np.array(test_acc), current,
                           seconds)


def mlp_gradient_check(loss_and_grads: Callable, numerical_gradient: Callable, params: dict,
                   X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Relative error between the learner's gradients and a central difference of its loss.

    For every parameter ``k``, the loss is seen as a function of ``params[k]`` alone (the
    others fixed) and ``numerical_gradient`` differentiates it; the result is compared with
    ``grads[k]`` by :func:`dlopt.lessons.l01_activations.gradcheck.relative_error`.

    Parameters
    ----------
    loss_and_grads : callable
        ``loss, grads = loss_and_grads(params, X, y)``.
    numerical_gradient : callable
        ``numerical_gradient(f, x) -> ndarray`` of ``x``'s shape, a central difference.
    params : dict
        W1, b1, W2, b2 (float64).
    X : ndarray, shape (N, D)
    y : ndarray of int, shape (N,)

    Returns
    -------
    dict of str to float
        Parameter name -> relative error (about 1e-9 or less: the gradients agree).
    """
    params = {k: np.array(params[k], dtype=np.float64) for k in MLP_KEYS}
    _, grads = _checked_grads(function_name(loss_and_grads),
                              loss_and_grads({k: v.copy() for k, v in params.items()}, X, y),
                              params, 1)
    errors = {}
    for k in MLP_KEYS:
        def loss_of(w, k=k):
            return float(loss_and_grads({**params, k: w}, X, y)[0])

        errors[k] = relative_error(grads[k], numerical_gradient(loss_of, params[k].copy()))
    return errors


def plot_training(ax_loss, ax_acc, history: TrainingHistory, *, target: float | None = None,
                  messages: Sequence[str] = ()) -> None:
    """Training loss (left) and train/test accuracy (right) against the epoch.

    Parameters
    ----------
    ax_loss, ax_acc : matplotlib Axes
    history : TrainingHistory
    target : float, optional
        An accuracy to mark with a dotted line (e.g. 0.95).
    messages : sequence of str
    """
    epochs = np.arange(1, len(history.train_loss) + 1)
    ax_loss.plot(epochs, history.train_loss, marker="o", ms=3, color="0.3")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (cross-entropy)")
    ax_loss.grid(alpha=0.3, which="both")
    ax_acc.plot(epochs, history.train_accuracy, marker="o", ms=3, label="train")
    ax_acc.plot(epochs, history.test_accuracy, marker="o", ms=3, label="test")
    if target is not None:
        ax_acc.axhline(target, ls=":", color="0.5", label=f"{target:.0%}")
    ax_acc.set_xlabel("epoch")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set_ylabel("accuracy")
    ax_acc.legend(fontsize=8)
    ax_acc.grid(alpha=0.3)
    show_messages(ax_loss, messages)

