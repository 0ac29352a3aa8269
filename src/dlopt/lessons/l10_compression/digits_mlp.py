"""Lesson 10: the small digits MLPs that the lesson prunes, quantizes and distills.

A network is a ``torch.nn.Sequential`` of ``Linear`` and ``ReLU`` layers in float32 on the CPU
(64 inputs, 10 classes), trained with mini-batches drawn by a seeded NumPy generator, one torch
thread (:func:`dlopt.kit.threads.cpu_threads`): the networks are tiny, and one thread is the
steadiest on a shared machine. :func:`train_steps` calls ``after_step(model)`` after every
optimizer step, which is where a pruning mask is re-applied.

:func:`check_learner` tries a learner's function on a small input before an experiment relies
on it, and turns a stub or a wrong return into a one-line message.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dlopt.kit.data import DigitsSplit
from dlopt.kit.learner import function_name, probe
from dlopt.kit.threads import cpu_threads

__all__ = [
    "Trained",
    "classifier_accuracy",
    "check_learner",
    "linears",
    "make_mlp",
    "tensors",
    "train_classifier",
    "train_steps",
]


def make_mlp(sizes: Sequence[int] = (64, 128, 128, 10), *, seed: int = 0) -> torch.nn.Sequential:
    """A ReLU MLP with torch's default initialization, seeded.

    Parameters
    ----------
    sizes : sequence of int
        Widths from the input to the output, e.g. ``(64, 128, 128, 10)``.
    seed : int
        Seed of torch's generator for the initial weights.
    """
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        layers: list[torch.nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(torch.nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
    finally:
        torch.random.set_rng_state(gen_state)
    return torch.nn.Sequential(*layers)


def linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """The model's ``Linear`` layers, from the input to the output."""
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def tensors(digits: DigitsSplit) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(X_train, y_train, X_test, y_test)`` as float32 and int64 tensors."""
    return (torch.tensor(digits.X_train, dtype=torch.float32),
            torch.tensor(digits.y_train, dtype=torch.int64),
            torch.tensor(digits.X_test, dtype=torch.float32),
            torch.tensor(digits.y_test, dtype=torch.int64))


@cpu_threads(1)
def classifier_accuracy(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``X``'s rows whose largest logit is the label ``y``."""
    with torch.no_grad():
        return float((model(X).argmax(dim=1) == y).double().mean())


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, X: torch.Tensor,
                y: torch.Tensor, steps: int, *, batch_size: int = 64, seed: int = 0,
                loss_fn: Callable | None = None,
                before_step: Callable[[torch.nn.Module], None] | None = None,
                after_step: Callable[[torch.nn.Module], None] | None = None,
                record: Callable[[int, torch.nn.Module], None] | None = None) -> None:
    """``steps`` mini-batch steps of ``optimizer`` on the cross-entropy (or ``loss_fn``).

    Parameters
    ----------
    model, optimizer
        Trained in place.
    X, y : tensors
        Inputs and labels; the mini-batches are ``batch_size`` rows drawn without replacement
        by ``np.random.default_rng(seed)`` (a new permutation each epoch).
    loss_fn : callable, optional
        ``loss_fn(model, X_batch, y_batch) -> scalar tensor``; default cross-entropy.
    before_step : callable, optional
        ``before_step(model)`` after the backward pass, before ``optimizer.step()`` (to mask
        gradients, say).
    after_step : callable, optional
        ``after_step(model)`` after every ``optimizer.step()`` (to re-apply a mask, say).
    record : callable, optional
        ``record(step, model)`` after ``after_step``, with ``step`` counted from 1.
    """
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    order, start = rng.permutation(n), 0
    with cpu_threads(1):
        for step in range(1, steps + 1):
            if start + batch_size > n:
                order, start = rng.permutation(n), 0
            idx = torch.from_numpy(order[start:start + batch_size])
            start += batch_size
            optimizer.zero_grad(set_to_none=True)
            if loss_fn is None:
                loss = F.cross_entropy(model(X[idx]), y[idx])
            else:
                loss = loss_fn(model, X[idx], y[idx])
            loss.backward()
            if before_step is not None:
                before_step(model)
            optimizer.step()
            if after_step is not None:
                after_step(model)
            if record is not None:
                record(step, model)


@dataclass
class Trained:
    """A trained model and the optimizer that trained it (with its state: momentum buffers).

    Attributes
    ----------
    model : torch.nn.Sequential
    optimizer : torch.optim.Optimizer
    test_accuracy : float
    """

    model: torch.nn.Sequential
    optimizer: torch.optim.Optimizer
    test_accuracy: float

    def copy(self) -> Trained:
        """A deep copy: the optimizer holds the copied parameters and a copy of the state."""
        model = copy.deepcopy(self.model)
        optimizer = type(self.optimizer)(model.parameters(), **self.optimizer.defaults)
        optimizer.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))
        return Trained(model, optimizer, self.test_accuracy)


@cpu_threads(1)
def train_classifier(digits: DigitsSplit, sizes: Sequence[int] = (64, 128, 128, 10), *,
              steps: int = 400, lr: float = 0.05, momentum: float = 0.9,
              weight_decay: float = 5e-4, batch_size: int = 64, seed: int = 0) -> Trained:
    """Train an MLP on the digits with SGD, momentum and weight decay (``torch.optim.SGD``).

    Returns
    -------
    Trained
        The model, its optimizer (with momentum buffers: the pruning lab continues from them)
        and its test accuracy.
    """
    X, y, X_test, y_test = tensors(digits)
    model = make_mlp(sizes, seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                weight_decay=weight_decay)
    train_steps(model, optimizer, X, y, steps, batch_size=batch_size, seed=seed)
    return Trained(model, optimizer, classifier_accuracy(model, X_test, y_test))


def check_learner(fn: Callable, *args, check: Callable[[object], str | None] | None = None,
                  **kwargs) -> str | None:
    """Try ``fn(*args, **kwargs)``; describe what is wrong, or return None.

    Parameters
    ----------
    fn : callable
        A learner's function.
    check : callable, optional
        ``check(result) -> message or None``: what the experiment needs of the result (a
        shape, a tuple of two...). Its message is prefixed with the function's name.

    Returns
    -------
    str or None
        ``"implement `name` first"`` for a stub, ``"`name` raised ..."`` for another
        exception, ``"`name` ..."`` when ``check`` objects, None when ``fn`` can be used.
    """
    result, problem = probe(fn, *args, **kwargs)
    if problem is not None:
        return problem
    if check is not None:
        objection = check(result)
        if objection:
            return f"`{function_name(fn)}` {objection}"
    return None
