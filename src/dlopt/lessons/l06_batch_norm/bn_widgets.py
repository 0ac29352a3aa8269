"""Lesson 06: the activation explorer, each hidden layer's values during training, with and
without batch norm.

The training runs are :func:`dlopt.lessons.l06_batch_norm.bn_lab.record_activations` with the
learner's batch norm; a run is computed the first time its initialization scale is chosen,
then kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ipywidgets as W
import numpy as np

from dlopt.kit import plotting
from dlopt.kit.figure_widget import FigureWidget
from dlopt.kit.learner import attempt
from dlopt.lessons.l06_batch_norm import bn_lab

__all__ = ["ActivationHistogramExplorer", "plot_layer_histograms"]

SHOW = {"input of the ReLU": "relu_input", "output of the linear layer": "linear"}


def plot_layer_histograms(ax, values: np.ndarray, *, x_range: tuple[float, float],
                          title: str = "", bins: int = 60) -> None:
    """One outlined histogram (a density) per layer, with each layer's mean and std.

    Parameters
    ----------
    ax : matplotlib Axes
    values : ndarray, shape (n_layers, n_values)
        Layer l's values in row l (layer 1 next to the input).
    x_range : (float, float)
        Range of the bins; values outside are counted in the outer bins.
    title : str
    bins : int
    """
    lo, hi = x_range
    edges = np.linspace(lo, hi, bins + 1)
    for layer, row in enumerate(np.asarray(values, dtype=np.float64), start=1):
        finite = row[np.isfinite(row)]
        if finite.size == 0:
            ax.plot([], [], label=f"layer {layer}: not finite")
            continue
        density, _ = np.histogram(np.clip(finite, lo, hi), bins=edges, density=True)
        ax.stairs(density, edges, color=plotting.color_at(layer - 1),
                  lw=1.5, label=f"layer {layer}: mean {finite.mean():+.2f}, std {finite.std():.2f}")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("value")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right")


def _range(record: bn_lab.ActivationRecord, key: str) -> tuple[float, float]:
    """A symmetric range holding 99.5 % of all values of a run, over every snapshot."""
    values = np.abs(getattr(record, key))
    values = values[np.isfinite(values)]
    top = float(np.quantile(values, 0.995)) if values.size else 1.0
    return -max(top, 1e-3), max(top, 1e-3)


class ActivationHistogramExplorer(FigureWidget):
    """Move through training and see every hidden layer's distribution, without and with BN.

    Left: the MLP of :func:`dlopt.lessons.l06_batch_norm.bn_lab.train_grid` without batch
    norm; right: with the learner's batch norm. Same initial weights, mini-batches and
    learning rate. The values are those of the training batch at the chosen step: the inputs
    of the ReLUs, or the outputs of the linear layers (the inputs of batch norm).

    Parameters
    ----------
    forward, backward : callable
        The learner's ``batchnorm_forward`` and ``batchnorm_backward``.
    data : DigitsSplit
    lr : float
        Learning rate of both runs.
    init_scales : sequence of float
        Choices of the initialization scale (times He-normal).
    init_scale : float
        The initial choice (one of ``init_scales``).
    steps, every : int
        SGD steps per run; a snapshot every ``every`` steps.
    hidden : sequence of int
        Widths of the hidden layers.
    """

    figsize = (10.0, 3.8)
    layout = (1, 2)

    def __init__(self, forward: Callable, backward: Callable, data, *, lr: float = 0.05,
                 init_scales: Sequence[float] = (0.5, 1.0, 2.0), init_scale: float = 2.0,
                 steps: int = 200, every: int = 10, hidden: Sequence[int] = (64, 64, 64)):
        self.forward, self.backward, self.data = forward, backward, data
        self.lr, self.steps, self.every, self.hidden = lr, steps, every, tuple(hidden)
        self.runs: dict[tuple[float, bool], tuple[bn_lab.ActivationRecord | None, str | None]] = {}
        self.step = W.IntSlider(value=0, min=0, max=steps - every, step=every,
                                description="SGD step", continuous_update=False)
        self.scale = W.Dropdown(options=list(init_scales), value=init_scale,
                                description="init scale")
        self.show = W.Dropdown(options=list(SHOW), value="input of the ReLU", description="show")
        super().__init__([self.step, self.scale, self.show])
        self.redraw()

    def run(self, batch_norm: bool):
        """The recorded run for the current scale: ``(record, None)`` or ``(None, message)``."""
        key = (float(self.scale.value), batch_norm)
        if key not in self.runs:
            self.runs[key] = attempt(
                bn_lab.record_activations, self.forward, self.backward, self.data,
                batch_norm=batch_norm, lr=self.lr, init_scale=self.scale.value,
                hidden=self.hidden, steps=self.steps, every=self.every)
        return self.runs[key]

    def draw(self, fig, axes) -> list[str]:
        messages = []
        field = SHOW[self.show.value]
        for ax, batch_norm in zip(axes, (False, True), strict=True):
            label = "with batch norm" if batch_norm else "without batch norm"
            record, message = self.run(batch_norm)
            if message is not None:
                messages.append(f"{label}: {message}")
                ax.set_title(label)
                plotting.show_messages(ax, [message])
                continue
            i = int(np.searchsorted(record.steps, self.step.value))
            i = min(i, len(record.steps) - 1)
            step = int(record.steps[i])
            loss = record.losses[step]
            plot_layer_histograms(ax, getattr(record, field)[i], x_range=_range(record, field),
                                  title=f"{label}: {self.show.value}\nstep {step}, "
                                        f"batch loss {loss:.3f}")
        return messages
