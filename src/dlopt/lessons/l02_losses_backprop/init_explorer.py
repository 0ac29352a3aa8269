"""Lesson 02: the initialization explorer, activation statistics through a deep stack.

Pick the activation (tanh or ReLU), the initializer (the learner's Xavier or He, or a fixed
standard deviation that is too small or too large), a scale that multiplies the weights, and
the depth. Left: the standard deviation of every layer's activations, for every initializer
at scale 1 (thin) and the chosen one at the chosen scale (thick). Right: a histogram of the
last layer's activations for the chosen setting. The numbers come from
:func:`dlopt.lessons.l02_losses_backprop.init_lab.activation_stds`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import ipywidgets as W
import numpy as np

from dlopt.kit.figure_widget import FigureWidget
from dlopt.kit.learner import attempt
from dlopt.lessons.l02_losses_backprop import init_lab

__all__ = ["InitExplorer"]


class InitExplorer(FigureWidget):
    """Controls: activation, initializer, weight scale, depth.

    Parameters
    ----------
    inits : mapping of str to callable
        Label -> ``init(fan_in, fan_out, rng)``, e.g. ``{"too small": fixed_normal(0.01),
        "Xavier": xavier_normal, "He": he_normal, "too large": fixed_normal(1.0)}``.
    activation : {"tanh", "relu"}
        Initial activation.
    init : str, optional
        Initially chosen initializer (default: the first).
    depth, max_depth : int
        Initial depth and the largest on the slider.
    width, batch_size, seed : int
        Passed to :func:`dlopt.lessons.l02_losses_backprop.init_lab.activation_stds`.
    """

    figsize = (9.0, 3.4)

    def __init__(self, inits: Mapping[str, Callable], *, activation: str = "tanh",
                 init: str | None = None, depth: int = 15, max_depth: int = 50,
                 width: int = 256, batch_size: int = 256, seed: int = 0):
        self.inits = dict(inits)
        self.width = width
        self.batch_size = batch_size
        self.seed = seed
        names = list(self.inits)
        self.activation = W.Dropdown(options=list(init_lab.ACTIVATIONS), value=activation,
                                     description="activation")
        self.init = W.Dropdown(options=names, value=init or names[0], description="init")
        self.scale = W.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.05,
                                      description="× scale", continuous_update=False)
        self.depth = W.IntSlider(value=depth, min=2, max=max_depth, description="depth",
                                 continuous_update=False)
        super().__init__([self.activation, self.init, self.scale, self.depth])
        self.redraw()

    def draw(self, fig, axes) -> list[str]:
        kwargs = {"depth": self.depth.value, "width": self.width,
                  "batch_size": self.batch_size, "seed": self.seed}
        act = self.activation.value
        stds, messages = init_lab.compare_inits(self.inits, act, **kwargs)
        chosen, scale = self.init.value, self.scale.value
        trace, message = attempt(init_lab.activation_stds, self.inits[chosen], act,
                                 scale=scale, **kwargs)
        if trace is None and not any(m.startswith(f"{chosen}: ") for m in messages):
            messages.append(f"{chosen}: {message}")
        init_lab.plot_activation_stds(axes[0], stds, title=f"{act}, depth {self.depth.value}",
                                      messages=messages)
        for line in axes[0].get_lines():
            line.set_alpha(0.35)
        if trace is not None:
            values = np.maximum(trace.std, np.finfo(np.float64).tiny)
            axes[0].plot(np.arange(1, values.size + 1), values, lw=3, color="k",
                         label=f"{chosen} × {scale:.2g}")
            axes[0].legend(fontsize=8)
            init_lab.plot_activation_histogram(
                axes[1], trace.last,
                title=f"last layer: {chosen} × {scale:.2g}, std {trace.std[-1]:.2g}")
        return messages
