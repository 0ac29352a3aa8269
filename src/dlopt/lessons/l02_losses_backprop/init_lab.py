"""Lesson 02: weight initialization, activation statistics per layer of a deep stack.

The learner writes ``xavier_normal(fan_in, fan_out, rng)`` and
``he_normal(fan_in, fan_out, rng)``; this module never draws Xavier or He weights itself (the
checks' references are the instructor's, :mod:`dlopt_instructor.init`, and their drivers are
:mod:`dlopt.grading.drivers.init`). It provides

- the experiment: :func:`activation_stds` pushes a batch through a deep stack of tanh or
  ReLU layers and records the standard deviation of every layer's activations, for any
  initialization; :func:`compare_inits` runs it for several, skipping unfinished ones;
  :func:`plot_activation_stds` and :func:`plot_activation_histogram` draw the results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from dlopt.kit.learner import attempt_each, function_name
from dlopt.kit.plotting import plot_per_layer
from dlopt.kit.threads import cpu_threads

__all__ = [
    "ACTIVATIONS",
    "ActivationTrace",
    "activation_stds",
    "compare_inits",
    "fixed_normal",
    "plot_activation_histogram",
    "plot_activation_stds",
]

#: Activations of the experiment, computed by torch: name -> function of a tensor.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
}


def fixed_normal(std: float) -> Callable:
    """An initializer ``(fan_in, fan_out, rng) -> rng.normal(0, std, (fan_in, fan_out))``
    with a fixed ``std`` whatever the layer's size (the "too small" 0.01 or "too large" 1.0
    of the experiment)."""

    def init(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(0.0, std, size=(fan_in, fan_out))

    init.__name__ = f"normal(0, {std:g}^2)"
    return init


# --- drivers for the checks -------------------------------------------------------------------






# --- the experiment ---------------------------------------------------------------------------
class ActivationTrace(NamedTuple):
    """Activations of a deep stack at initialization.

    Attributes
    ----------
    std : ndarray, shape (depth,)
        Standard deviation of every entry of ``h_l`` for ``l = 1..depth`` (index 0: the first
        layer, next to the input).
    last : ndarray, shape (batch_size, width)
        The activations ``h_depth`` of the last layer.
    """

    std: np.ndarray
    last: np.ndarray


def activation_stds(init: Callable, activation: str = "tanh", *, depth: int = 15,
                    width: int = 256, batch_size: int = 256, scale: float = 1.0,
                    seed: int = 0) -> ActivationTrace:
    """Standard deviation of each layer's activations in a deep stack at initialization.

    The stack is ``h_0 = X`` (standard normal, shape (batch_size, width)) and
    ``h_l = act(h_{l-1} @ W_l)`` for ``l = 1..depth``, without biases, where every ``W_l``
    is ``scale * init(width, width, rng)`` and ``act`` is torch's tanh or ReLU.

    Parameters
    ----------
    init : callable
        ``init(fan_in, fan_out, rng) -> ndarray of shape (fan_in, fan_out)``: the learner's
        ``xavier_normal`` or ``he_normal``, or :func:`fixed_normal`.
    activation : {"tanh", "relu"}
    depth, width, batch_size : int
    scale : float
        Multiplies every weight matrix (1: the initializer as it is).
    seed : int
        Seed of the inputs and of the ``rng`` passed to ``init``: every initializer sees the
        same inputs and the same generator.

    Returns
    -------
    ActivationTrace
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {list(ACTIVATIONS)}")
    if depth < 1 or width < 1 or batch_size < 1:
        raise ValueError("depth, width and batch_size must be positive")
    act = ACTIVATIONS[activation]
    rng = np.random.default_rng(seed)
    h = torch.from_numpy(rng.standard_normal((batch_size, width)))
    name = function_name(init)
    stds = []
    for _ in range(depth):
        W = np.asarray(init(width, width, rng), dtype=np.float64)
        if W.shape != (width, width):
            raise ValueError(f"`{name}` returned shape {W.shape} for fan_in={width}, "
                             f"fan_out={width}; expected ({width}, {width})")
        with cpu_threads(1):  # small matrices: one thread is faster, and robust to load
            h = act(h @ torch.from_numpy(scale * W))
            stds.append(float(h.std(correction=0)))
    return ActivationTrace(np.array(stds), h.numpy())


def compare_inits(inits: Mapping[str, Callable], activation: str = "tanh",
                  **kwargs) -> tuple[dict[str, np.ndarray], list[str]]:
    """:func:`activation_stds` for every initializer that is implemented.

    Parameters
    ----------
    inits : mapping of str to callable
        Label -> initializer, e.g. ``{"Xavier": xavier_normal, "He": he_normal}``.
    activation : {"tanh", "relu"}
    **kwargs
        Passed to :func:`activation_stds` (``depth``, ``width``, ``seed``, ...).

    Returns
    -------
    stds : dict of str to ndarray of shape (depth,)
    messages : list of str
        One per initializer that was skipped, e.g. "He: implement `he_normal` first".
    """
    return attempt_each(inits, lambda init: activation_stds(init, activation, **kwargs).std)


_STYLE = {"too small": "tab:gray", "Xavier": "tab:blue", "He": "tab:green",
          "too large": "tab:red"}


def plot_activation_stds(ax, stds: Mapping[str, np.ndarray], *, title: str = "",
                         messages: Sequence[str] = ()) -> None:
    """Standard deviation of the activations per layer, log scale, layer 1 on the left.

    Parameters
    ----------
    ax : matplotlib Axes
    stds : mapping of str to ndarray of shape (depth,)
        Label -> std of ``h_l`` for ``l = 1..depth`` (from :func:`compare_inits`).
    title : str
    messages : sequence of str
        Shown in the corner (initializers that could not run).
    """
    plot_per_layer(ax, stds, ylabel="std of the activations", title=title, messages=messages,
                   colors=_STYLE, grid=True)


def plot_activation_histogram(ax, values: np.ndarray, *, title: str = "",
                              bins: int = 60) -> None:
    """Histogram of a layer's activations (every entry), as a share of all entries."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size:
        ax.hist(values, bins=bins, weights=np.full(values.size, 1.0 / values.size),
                color="0.4")
    ax.set_xlabel("activation value")
    ax.set_ylabel("share of entries")
    ax.set_title(title)
