"""Lesson 11: the learner's data-parallel functions at work, simulated in one process.

- :func:`simulated_training`: softmax regression on the digits by full-batch gradient descent,
  and the same steps taken by k simulated ranks (the learner's ``shard_indices`` picks each
  rank's examples, ``data_parallel_gradient`` combines their gradients through the learner's
  ``ring_allreduce``) and by gradient accumulation over micro-batches of unequal sizes
  (``accumulated_gradient``). The weights of every run are compared with full-batch descent
  at every step: with equal shards they are the same numbers, up to float64's rounding.
- :func:`padding_gap`: when k does not divide n, DistributedSampler's padding counts a few
  examples twice; how far the data-parallel gradient then is from the full batch's.
- :func:`bucket_costs`: the learner's ``allreduce_time`` for one gradient sent as one
  message, as DDP's 25 MB buckets, or as many small messages.
- :func:`zero_table`: the learner's ``zero_memory_per_rank`` for every stage and world size.

The interfaces assumed (lesson 11): ``out, sent = ring_allreduce(xs)``;
``allreduce_time(n_bytes, k, latency, bandwidth) -> seconds``;
``shard_indices(n, rank, world_size) -> indices``;
``data_parallel_gradient(w, X_shards, y_shards, grad_fn) -> gradient``;
``accumulated_gradient(w, micro_batches, grad_fn) -> gradient``;
``zero_memory_per_rank(n_params, world_size, stage) -> bytes``. Nothing here computes any of
them: every experiment takes the learner's functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dlopt.kit.data import DigitsSplit
from dlopt.kit.learner import LearnerError, function_name, probe
from dlopt.lessons.l11_distributed.losses import softmax_regression_grad, softmax_regression_loss

__all__ = ["MB", "SimulatedRuns", "bucket_costs", "padding_gap", "problem_with",
           "simulated_training", "with_bias", "zero_table"]

MB = 1e6  # bytes in a megabyte (DDP's bucket_cap_mb counts 2**20; the difference is 5 %)


def problem_with(fn: Callable, *args, check: Callable[[object], str | None] | None = None
                 ) -> str | None:
    """Try a learner's ``fn(*args)``: ``"implement `name` first"``, another problem, or None.

    ``check(result)`` may object to what ``fn`` returned (a message without the name).
    """
    result, problem = probe(fn, *args)
    if problem is None and check is not None:
        objection = check(result)
        if objection:
            problem = f"`{function_name(fn)}` {objection}"
    return problem


def with_bias(X: np.ndarray) -> np.ndarray:
    """``X`` with a column of ones appended (the classifier's bias is its last row of ``w``)."""
    return np.hstack([X, np.ones((len(X), 1))])


@dataclass
class SimulatedRuns:
    """Losses and weights' distance to full-batch descent, per run and step.

    Attributes
    ----------
    loss : dict
        Run label -> training loss after each step (index 0: before the first).
    deviation : dict
        Run label -> max |w - w_full| after each step (index 0: 0).
    test_accuracy : dict
        Run label -> test accuracy of its final weights.
    n_examples : int
        Examples in the batch every run covers at each step.
    """

    loss: dict[str, np.ndarray] = field(default_factory=dict)
    deviation: dict[str, np.ndarray] = field(default_factory=dict)
    test_accuracy: dict[str, float] = field(default_factory=dict)
    n_examples: int = 0
    problems: list[str] = field(default_factory=list)


def _gradient(fn: Callable, *args) -> np.ndarray:
    g = fn(*args)
    if type(g) is not np.ndarray or g.shape != np.shape(args[0]):
        got = getattr(g, "shape", type(g).__name__)
        raise LearnerError(f"`{function_name(fn)}` must return an array of w's shape "
                           f"{np.shape(args[0])}; got {got}")
    return g


def simulated_training(digits: DigitsSplit, *, shard_fn: Callable | None = None,
                       dp_fn: Callable | None = None, acc_fn: Callable | None = None,
                       world_sizes: Sequence[int] = (2, 4, 8), n: int = 1344,
                       micro_sizes: Sequence[int] = (512, 512, 256, 64), steps: int = 20,
                       lr: float = 0.5) -> SimulatedRuns:
    """Full-batch descent on the first ``n`` training digits, and the same steps data-parallel
    (one run per k in ``world_sizes``, shards from ``shard_fn``, gradient from ``dp_fn``) and
    accumulated (micro-batches of ``micro_sizes`` examples, gradient from ``acc_fn``).

    A run whose functions are missing (None) or unfinished is left out, with a message in
    ``problems``. ``n`` should be divisible by every k (1344 = 2**6 * 21 is), so that the
    shards are equal and hold every example once.
    """
    X, y = with_bias(digits.X_train[:n]), digits.y_train[:n]
    X_test = with_bias(digits.X_test)
    w0 = np.zeros((X.shape[1], 10))
    runs: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "full batch": lambda w: softmax_regression_grad(w, X, y)}
    result = SimulatedRuns(n_examples=n)
    if shard_fn is not None and dp_fn is not None:
        problem = (problem_with(shard_fn, n, 0, world_sizes[0])
                   or problem_with(dp_fn, w0, [X[:4], X[4:8]], [y[:4], y[4:8]],
                                   softmax_regression_grad))
        if problem:
            result.problems.append(problem)
        else:
            for k in world_sizes:
                shards = [np.asarray(shard_fn(n, r, k)) for r in range(k)]
                X_shards, y_shards = [X[s] for s in shards], [y[s] for s in shards]
                runs[f"data-parallel, k = {k}"] = (
                    lambda w, Xs=X_shards, ys=y_shards:
                    _gradient(dp_fn, w, Xs, ys, softmax_regression_grad))
    if acc_fn is not None:
        problem = problem_with(acc_fn, w0, [(X[:3], y[:3]), (X[3:4], y[3:4])],
                               softmax_regression_grad)
        if problem:
            result.problems.append(problem)
        else:
            edges = np.cumsum([0, *micro_sizes])
            micro = [(X[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]
            sizes = ", ".join(map(str, micro_sizes))
            runs[f"accumulated ({sizes})"] = (
                lambda w: _gradient(acc_fn, w, micro, softmax_regression_grad))
    weights = {}
    for label, gradient in runs.items():
        w = w0.copy()
        trajectory, losses = [w.copy()], [softmax_regression_loss(w, X, y)]
        for _ in range(steps):
            w = w - lr * gradient(w)
            trajectory.append(w.copy())
            losses.append(softmax_regression_loss(w, X, y))
        weights[label] = trajectory
        result.loss[label] = np.array(losses)
        result.test_accuracy[label] = float(np.mean((X_test @ w).argmax(1) == digits.y_test))
    full = weights["full batch"]
    for label, trajectory in weights.items():
        result.deviation[label] = np.array([np.abs(a - b).max()
                                            for a, b in zip(trajectory, full, strict=True)])
    return result


def padding_gap(digits: DigitsSplit, shard_fn: Callable, dp_fn: Callable, k: int = 4,
                seed: int = 0) -> dict:
    """The data-parallel gradient on ALL the training digits (n not divisible by k: padded
    shards) against the full-batch gradient, at random weights.

    Returns
    -------
    dict
        ``"n"``, ``"padded"`` (examples counted twice), ``"relative difference"``
        (|g_dp - g_full| / |g_full|, Frobenius norms).
    """
    X, y = with_bias(digits.X_train), digits.y_train
    n = len(X)
    w = np.random.default_rng(seed).normal(0.0, 0.1, size=(X.shape[1], 10))
    shards = [np.asarray(shard_fn(n, r, k)) for r in range(k)]
    g_dp = _gradient(dp_fn, w, [X[s] for s in shards], [y[s] for s in shards],
                     softmax_regression_grad)
    g_full = softmax_regression_grad(w, X, y)
    return {"n": n, "padded": sum(len(s) for s in shards) - n,
            "relative difference": float(np.linalg.norm(g_dp - g_full) / np.linalg.norm(g_full))}


def bucket_costs(time_fn: Callable, n_bytes: float, world_sizes: Sequence[int], *,
                 latency: float, bandwidth: float,
                 message_bytes: Sequence[float] = (100 * MB, 25 * MB, 1 * MB, 0.1 * MB, 4e3)
                 ) -> dict[float, np.ndarray]:
    """Seconds to all-reduce ``n_bytes`` of gradients sent as messages of each size.

    ``ceil(n_bytes / size)`` messages, each all-reduced on its own with the learner's
    ``allreduce_time(size, k, latency, bandwidth)``; one array over ``world_sizes`` per
    message size.
    """
    table = {}
    for size in message_bytes:
        count = math.ceil(n_bytes / size)
        last = n_bytes - (count - 1) * size
        table[size] = np.array([(count - 1) * float(time_fn(size, k, latency, bandwidth))
                                + float(time_fn(last, k, latency, bandwidth))
                                for k in world_sizes])
    return table


def zero_table(zero_fn: Callable, n_params: float, world_sizes: Sequence[int],
               stages: Sequence[int] = (0, 1, 2, 3)) -> dict[int, np.ndarray]:
    """Bytes of model state per rank, by the learner's function: stage -> array over k."""
    return {stage: np.array([float(zero_fn(n_params, k, stage)) for k in world_sizes])
            for stage in stages}
