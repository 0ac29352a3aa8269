"""Lesson 03: full-batch, stochastic and mini-batch gradient descent on a least-squares problem.

The learner's ``minibatch_gradient(w, X, Y, idx)`` and update rules
(``w_next, state = rule(w, dw, state, **hyperparameters)``) are passed in; this module only
samples the examples, runs the loop, evaluates and times. GD, SGD and mini-batch SGD differ
in one thing only, which examples ``idx`` holds: all of them, one, or a batch.

The loss value is computed with ``torch.nn.functional.mse_loss`` (lesson 02 builds it by hand):
``L(w) = 1/(2n) sum_i ||x_i^T w - y_i||^2`` over the ``n`` examples given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from dlopt.kit import plotting, timing
from dlopt.kit.data import load_digits_split

__all__ = [
    "History",
    "LeastSquaresProblem",
    "accuracy",
    "batch_indices",
    "digits_least_squares",
    "gradient_noise",
    "least_squares_loss",
    "plot_histories",
    "plot_noise",
    "step_seconds",
    "train",
]


def batch_indices(n_examples: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of mini-batches: a random permutation of ``0 .. n_examples - 1``, cut in order.

    Every example appears exactly once per epoch (sampling without replacement); the last
    batch is smaller when ``batch_size`` does not divide ``n_examples``. ``batch_size = 1``
    gives SGD's single examples, ``batch_size >= n_examples`` one batch of everything (GD).

    Parameters
    ----------
    n_examples, batch_size : int
    rng : numpy.random.Generator

    Returns
    -------
    list of ndarray of int64
        Index arrays of shape (batch_size,) (the last one possibly shorter).
    """
    if n_examples < 1 or batch_size < 1:
        raise ValueError(f"n_examples and batch_size must be >= 1, got {n_examples}, "
                         f"{batch_size}")
    order = rng.permutation(n_examples)
    return [order[i:i + batch_size] for i in range(0, n_examples, batch_size)]


class LeastSquaresProblem(NamedTuple):
    """Linear least squares on the digits: predict the one-hot label from the pixels.

    Attributes
    ----------
    X : ndarray, shape (n, d)
        Standardized training pixels that are not constant, clipped to [-3, 3], and a last
        column of ones (the bias).
    Y : ndarray, shape (n, 10)
        One-hot training labels (float64).
    X_test : ndarray, shape (n_test, d)
    y_test : ndarray, shape (n_test,)
        Test labels as class indices.
    """

    X: np.ndarray
    Y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def digits_least_squares(seed: int = 0) -> LeastSquaresProblem:
    """The digits as a least-squares problem (1347 training examples, d = 61, 10 outputs).

    A few rare pixels take standardized values up to 40; clipping them to 3 keeps every
    example's own curvature ``||x_i||^2`` below about 105, so that single-example SGD is
    stable for learning rates up to about 0.02. The Hessian ``X^T X / n`` of the whole set has
    largest eigenvalue ``L`` about 7.0 (gradient descent is stable for ``lr < 2 / L``, about
    0.29) and a condition number near 2000.
    """
    split = load_digits_split(seed=seed)
    keep = split.X_train.std(axis=0) > 0

    def design(X):
        return np.hstack([np.clip(X[:, keep], -3.0, 3.0), np.ones((X.shape[0], 1))])

    Y = np.eye(10)[split.y_train]
    return LeastSquaresProblem(design(split.X_train), Y, design(split.X_test), split.y_test)


def least_squares_loss(w: np.ndarray, X: np.ndarray, Y: np.ndarray) -> float:
    """``1/(2n) sum_i ||x_i^T w - y_i||^2``, with torch's ``mse_loss``.

    Parameters
    ----------
    w : ndarray, shape (d,) or (d, k)
    X : ndarray, shape (n, d)
    Y : ndarray, shape (n,) or (n, k)

    Returns
    -------
    float
    """
    prediction = np.asarray(X, dtype=np.float64) @ np.asarray(w, dtype=np.float64)
    with torch.no_grad():  # small tensors: torch runs this on one thread, no pool overhead
        loss = F.mse_loss(torch.from_numpy(prediction),
                          torch.from_numpy(np.asarray(Y, dtype=np.float64)), reduction="sum")
    return float(loss) / (2 * X.shape[0])


def accuracy(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Share of examples whose largest output ``x^T w`` is at their label ``y`` (indices)."""
    return float(np.mean(np.argmax(X @ w, axis=1) == y))


class History(NamedTuple):
    """A training run, evaluated on the whole training set at regular intervals.

    Attributes
    ----------
    steps : ndarray of int, shape (m,)
        Update steps taken at each evaluation (0 first).
    epochs : ndarray, shape (m,)
        Examples seen at each evaluation, divided by ``n``.
    losses : ndarray, shape (m,)
        Training loss :func:`least_squares_loss` at each evaluation.
    w : ndarray
        The final parameters.
    diverged : bool
        True if the loss became non-finite or exceeded 1e12 (the run was stopped).
    """

    steps: np.ndarray
    epochs: np.ndarray
    losses: np.ndarray
    w: np.ndarray
    diverged: bool


def train(minibatch_gradient: Callable, update_rule: Callable, X: np.ndarray, Y: np.ndarray,
          *, batch_size: int, epochs: float, seed: int = 0, w0: np.ndarray | None = None,
          hyperparameters: dict | None = None, evaluations_per_epoch: int = 10) -> History:
    """Mini-batch training: per step, ``dw = minibatch_gradient(w, X, Y, idx)`` then
    ``w, state = update_rule(w, dw, state, **hyperparameters)``.

    ``idx`` comes from :func:`batch_indices`, a new permutation per epoch: the same loop is
    GD (``batch_size = n``), SGD (1) or mini-batch SGD.

    Parameters
    ----------
    minibatch_gradient, update_rule : callable
        The learner's functions.
    X : ndarray, shape (n, d)
    Y : ndarray, shape (n, k)
    batch_size : int
    epochs : float
        Passes over the data (a fraction runs part of the last epoch).
    seed : int
        Seed of the batch order; the same seed gives the same batches.
    w0 : ndarray, shape (d, k), optional
        Starting parameters (default zeros).
    hyperparameters : dict, optional
        Passed to ``update_rule``.
    evaluations_per_epoch : int
        How often the training loss is recorded (at least once per step for full batches).

    Returns
    -------
    History
    """
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    w = np.zeros((X.shape[1], Y.shape[1])) if w0 is None else np.array(w0, dtype=np.float64)
    hyperparameters = hyperparameters or {}
    batch_size = min(batch_size, n)
    total = int(round(epochs * int(np.ceil(n / batch_size))))
    every = max(1, int(np.ceil(n / batch_size)) // evaluations_per_epoch)
    steps, seen, losses = [0], [0], [least_squares_loss(w, X, Y)]
    state: dict = {}
    step = examples = 0
    diverged = False
    while step < total and not diverged:
        for idx in batch_indices(n, batch_size, rng):
            w, state = update_rule(w, minibatch_gradient(w, X, Y, idx), state,
                                   **hyperparameters)
            step += 1
            examples += len(idx)
            if step % every == 0 or step == total:
                with np.errstate(all="ignore"):
                    loss = least_squares_loss(w, X, Y)
                diverged = not (np.isfinite(loss) and loss < 1e12)
                steps.append(step)
                seen.append(examples)
                losses.append(loss if not diverged else np.nan)
            if step == total or diverged:
                break
    return History(np.array(steps), np.array(seen) / n, np.array(losses), w, diverged)


def step_seconds(minibatch_gradient: Callable, update_rule: Callable, X: np.ndarray,
                 Y: np.ndarray, batch_size: int, *, hyperparameters: dict | None = None,
                 seed: int = 0, repeat: int = 7) -> timing.Timing:
    """Time one training step (gradient on a batch, then the update) with
    :func:`dlopt.kit.timing.measure`.

    Each measurement averages enough steps to last about a millisecond or more, on batches
    drawn once beforehand (drawing them is not timed).

    Returns
    -------
    dlopt.kit.timing.Timing
        Seconds per step: ``.median``, ``.spread``.
    """
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    batches = batch_indices(n, min(batch_size, n), rng)
    w = np.zeros((X.shape[1], Y.shape[1]))
    hyperparameters = hyperparameters or {}
    cursor = [0]

    def one_step():
        idx = batches[cursor[0] % len(batches)]
        cursor[0] += 1
        update_rule(w, minibatch_gradient(w, X, Y, idx), {}, **hyperparameters)

    first = timing.measure(one_step, repeat=1, warmup=1)
    number = max(1, int(1e-3 / max(first.median, 1e-7)))
    return timing.measure(one_step, repeat=repeat, warmup=1, number=number)


def gradient_noise(minibatch_gradient: Callable, w: np.ndarray, X: np.ndarray, Y: np.ndarray,
                   batch_sizes: Sequence[int], *, draws: int = 200,
                   seed: int = 0) -> np.ndarray:
    """How far a mini-batch gradient is from the full gradient, by batch size.

    For each batch size ``B``: ``draws`` batches of ``B`` distinct examples, and the mean of
    ``||g_B - g||^2 / ||g||^2`` where ``g`` is the gradient over all examples (computed by the
    same function with every index).

    Returns
    -------
    ndarray, shape (len(batch_sizes),)
    """
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    full = np.asarray(minibatch_gradient(w, X, Y, np.arange(n)), dtype=np.float64)
    scale = float(np.sum(full**2))
    noise = []
    for B in batch_sizes:
        errors = [np.sum((minibatch_gradient(w, X, Y, rng.choice(n, size=B, replace=False))
                          - full) ** 2) for _ in range(draws)]
        noise.append(float(np.mean(errors)) / scale)
    return np.array(noise)


def plot_noise(ax, batch_sizes: Sequence[int], noise: np.ndarray, n_examples: int) -> None:
    """Measured gradient noise against the batch size (log-log), with the prediction
    ``noise(1) * (n - B) / (B (n - 1))`` for batches drawn without replacement.

    Parameters
    ----------
    ax : matplotlib Axes
    batch_sizes : sequence of int, shape (m,)
    noise : ndarray, shape (m,)
        From :func:`gradient_noise`.
    n_examples : int
    """
    B = np.asarray(batch_sizes, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    ax.loglog(B, noise, marker="o", color="k", label="measured")
    grid = np.geomspace(B.min(), B.max(), 50)
    per_example = noise[0] * B[0] * (n_examples - 1) / (n_examples - B[0])
    ax.loglog(grid, per_example * (n_examples - grid) / (grid * (n_examples - 1)), ls="--",
              color="tab:blue", label="σ²/B · (n − B)/(n − 1)")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("E‖g_B − ∇L‖² / ‖∇L‖²")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")


def plot_histories(ax, histories: Mapping[str, History], *, x: str = "epochs",
                   seconds_per_step: Mapping[str, float] | None = None, floor: float = 0.0,
                   colors: Sequence[str] = plotting.PALETTE) -> None:
    """Training loss minus ``floor`` (log scale) against epochs, steps or seconds.

    Parameters
    ----------
    ax : matplotlib Axes
    histories : mapping of str to History
    x : {"epochs", "steps", "seconds"}
        With "seconds", the time axis is ``steps * seconds_per_step[label]``, from the first
        evaluation after step 0 (for a log axis).
    seconds_per_step : mapping of str to float, optional
        Needed for ``x="seconds"``.
    floor : float
        Subtracted from the losses (the minimum, so the curves show the gap to it).
    colors : sequence of str
    """
    if x not in ("epochs", "steps", "seconds"):
        raise ValueError(f"x must be 'epochs', 'steps' or 'seconds', got {x!r}")
    for (label, history), color in zip(histories.items(), list(colors) * 10, strict=False):
        losses = np.maximum(history.losses - floor, 1e-16)
        if x == "seconds":  # from the first step on: time 0 has no place on a log axis
            horizontal = history.steps[1:] * seconds_per_step[label]
            losses = losses[1:]
        else:
            horizontal = getattr(history, x)
        ax.plot(horizontal, losses, label=label, color=color, lw=1.5)
    ax.set_yscale("log")
    ax.set_xlabel({"epochs": "epochs (passes over the data)", "steps": "update steps",
                   "seconds": "seconds of computation"}[x])
    ax.set_ylabel("training loss − minimum" if floor else "training loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
