"""Lesson 01: the activation and depth explorers, controls wired to :mod:`dlopt.kit.plotting`.

Each explorer draws a matplotlib figure off-screen (Agg, no pyplot) into an
``ipywidgets.Image`` (:class:`dlopt.kit.figure_widget.FigureWidget`), so it redraws in any
frontend and can be tested headless. Displayed,
it also offers a static ``image/png`` of its current figure, which nbconvert and GitHub show
where no widget frontend runs. A learner's function that is not implemented yet is skipped
with a message ("implement `relu` first"); the others are still drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import ipywidgets as W
import numpy as np

from dlopt.kit import plotting
from dlopt.kit.figure_widget import FigureWidget
from dlopt.kit.learner import problem_with
from dlopt.lessons.l01_activations import vanishing

__all__ = ["ActivationExplorer", "DepthExplorer"]

Activations = Mapping[str, tuple[Callable, Callable]]


class ActivationExplorer(FigureWidget):
    """Pick activations and an input range; see ``f`` (left) and ``f'`` (right).

    Parameters
    ----------
    activations : mapping of str to (f, f_grad)
        For instance ``{"relu": (relu, relu_grad), ...}``: elementwise NumPy functions.
    x_range : (float, float)
        Initial input range.
    limits : (float, float)
        Range of the slider.
    selected : sequence of str, optional
        Initially selected activations (default: all).
    n_points : int
        Points at which the functions are evaluated.
    """

    def __init__(self, activations: Activations, *, x_range=(-5.0, 5.0), limits=(-10.0, 10.0),
                 selected: Sequence[str] | None = None, n_points: int = 401):
        self.activations = dict(activations)
        self.n_points = n_points
        names = list(self.activations)
        self.select = W.SelectMultiple(options=names, value=tuple(selected or names),
                                       rows=min(len(names), 6), description="activations")
        self.x_range = W.FloatRangeSlider(value=tuple(x_range), min=limits[0], max=limits[1],
                                          step=0.5, description="x range",
                                          continuous_update=False)
        super().__init__([self.select, self.x_range])
        self.redraw()

    def draw(self, fig, axes) -> list[str]:
        lo, hi = self.x_range.value
        x = np.linspace(lo, hi, self.n_points)
        values, slopes, messages = {}, {}, []
        for name in self.select.value:
            f, f_grad = self.activations[name]
            for fn, store in ((f, values), (f_grad, slopes)):
                problem = problem_with(fn, x)
                if problem is None:
                    store[name] = np.asarray(fn(x.copy()), dtype=np.float64)
                else:
                    messages.append(problem)
        plotting.plot_curves(axes[0], x, values, title="f(x)", ylabel="f(x)")
        plotting.plot_curves(axes[1], x, slopes, title="f'(x)", ylabel="f'(x)")
        plotting.show_messages(axes[0], messages)
        return messages


class DepthExplorer(FigureWidget):
    """Choose the depth and the initialization; see each layer's gradient norm.

    Left: ``||dL/dW_l||`` per layer (log scale), from
    :func:`dlopt.lessons.l01_activations.vanishing.layer_gradient_norms`.
    Right: the ratio between the first and the last layer's norm for each activation.

    Parameters
    ----------
    activations : mapping of str to (f, f_grad)
    depth : int
        Initial depth.
    max_depth : int
        Largest depth on the slider.
    width, batch_size, seed : int
        Passed to :func:`dlopt.lessons.l01_activations.vanishing.layer_gradient_norms`.
    init : {"xavier", "he"}
        Initial weight initialization.
    """

    def __init__(self, activations: Activations, *, depth: int = 20, max_depth: int = 50,
                 width: int = 64, batch_size: int = 64, init: str = "xavier", seed: int = 0):
        self.activations = dict(activations)
        self.width = width
        self.batch_size = batch_size
        self.seed = seed
        self.depth = W.IntSlider(value=depth, min=2, max=max_depth, description="depth",
                                 continuous_update=False)
        self.init = W.Dropdown(options=sorted(vanishing.INITS), value=init, description="init")
        super().__init__([self.depth, self.init])
        self.redraw()

    def draw(self, fig, axes) -> list[str]:
        norms, messages = vanishing.compare_activations(
            self.activations, depth=self.depth.value, width=self.width,
            batch_size=self.batch_size, init=self.init.value, seed=self.seed)
        plotting.plot_layer_norms(axes[0], norms, messages=messages,
                                  title=f"depth {self.depth.value}, {self.init.value} init")
        names = list(norms)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = [float(norms[n][0] / norms[n][-1]) for n in names]
        axes[1].bar(names, ratios, color=[plotting.color_for(n) for n in names])
        axes[1].set_yscale("log")
        axes[1].axhline(1.0, color="0.5", lw=0.8)
        axes[1].set_title("first layer / last layer")
        return messages
