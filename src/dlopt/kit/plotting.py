"""Plotting functions: each takes a matplotlib ``ax`` and data, and draws; none calls pyplot.

Used by every lesson's plots and explorers (lessons 01 to 09) and by
:class:`dlopt.kit.figure_widget.FigureWidget`.

Notebooks pass axes from ``plt.subplots``; widgets and tests use :func:`new_figure`, a
figure with its own Agg canvas that never touches pyplot's global state or ``rcParams``.
The course's colors come from one palette, :data:`PALETTE`: :func:`color_for` gives each
activation its fixed color, :func:`color_at` the i-th color of a series (optimizers, layers).
:func:`figure_png` renders a figure to PNG bytes; :func:`show_messages` writes what could not
be drawn ("implement `relu` first") in a corner of the axes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import PIL.Image
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "PALETTE",
    "color_at",
    "color_for",
    "figure_png",
    "new_figure",
    "plot_curves",
    "plot_dead_fraction",
    "plot_layer_norms",
    "plot_lr_sweep",
    "plot_per_layer",
    "plot_step_errors",
    "show_messages",
]

#: The course's colors, in order: matplotlib's "tab10" cycle.
PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
           "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
_NAMED = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu"]


def color_at(i: int) -> str:
    """The ``i``-th color of :data:`PALETTE`, cycling: the color of the i-th line of a series."""
    return PALETTE[i % len(PALETTE)]


def color_for(name: str) -> str:
    """A fixed color per activation name, so every plot of the course agrees."""
    if name in _NAMED:
        return PALETTE[_NAMED.index(name)]
    return PALETTE[len(_NAMED) + sum(map(ord, name)) % (len(PALETTE) - len(_NAMED))]


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize=(6.4, 4.0), dpi: float = 100.0,
               margins: Mapping[str, float] | None = None):
    """A figure with an Agg canvas (no pyplot) and its axes, as ``fig.subplots`` returns them.

    Parameters
    ----------
    nrows, ncols : int
    figsize : (float, float)
        Inches.
    dpi : float
        Pixels per inch of the canvas (and of :func:`figure_png`).
    margins : mapping, optional
        Fixed subplot margins (``left``, ``right``, ``bottom``, ``top``, ``wspace``,
        ``hspace`` as for ``Figure.subplots_adjust``). Default: matplotlib's constrained
        layout, which fits the labels but is recomputed at every draw.

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : Axes or ndarray of Axes
    """
    fig = Figure(figsize=figsize, dpi=dpi, layout=None if margins else "constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=True, gridspec_kw=dict(margins or {}))
    return fig, axes


def figure_png(fig: Figure, *, draw: bool = True) -> bytes:
    """The figure's pixels as PNG bytes, at the figure's own dpi.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A figure with an Agg canvas (:func:`new_figure`, or pyplot's with the Agg backend).
    draw : bool
        Draw the figure first. False encodes what the canvas holds already (after a
        blitted redraw: see :meth:`dlopt.kit.figure_widget.FigureWidget.render`).

    Returns
    -------
    bytes
        An RGB PNG, lightly compressed: encoding is a large share of a widget's redraw.
    """
    canvas = fig.canvas
    if not isinstance(canvas, FigureCanvasAgg):
        canvas = FigureCanvasAgg(fig)
        draw = True
    if draw:
        canvas.draw()
    image = PIL.Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(),
                                 "raw", "RGBA", 0, 1).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def show_messages(ax, messages: Sequence[str], *, corner: str = "upper left"):
    """Write messages (e.g. "relu: implement `relu` first") in a corner of ``ax``.

    Parameters
    ----------
    ax : matplotlib Axes
    messages : sequence of str
    corner : {"upper left", "lower left"}

    Returns
    -------
    matplotlib.text.Text or None
        The text drawn (None without messages), so a widget can remove it at its next redraw.
    """
    if not messages:
        return None
    if corner not in ("upper left", "lower left"):
        raise ValueError(f"corner must be 'upper left' or 'lower left', got {corner!r}")
    upper = corner == "upper left"
    return ax.text(0.02, 0.98 if upper else 0.02, "\n".join(messages), transform=ax.transAxes,
                   va="top" if upper else "bottom", ha="left", fontsize=8, color="tab:red",
                   bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "tab:red"})


def plot_curves(ax, x: np.ndarray, curves: Mapping[str, np.ndarray], *, title: str = "",
                ylabel: str = "", messages: Sequence[str] = ()) -> None:
    """One line per named curve over the same ``x``.

    Parameters
    ----------
    ax : matplotlib Axes
    x : ndarray, shape (n,)
    curves : mapping of str to ndarray of shape (n,)
        Label -> values; activation names get their fixed colors.
    title, ylabel : str
    messages : sequence of str
        Shown in the corner (functions that could not be drawn).
    """
    for label, y in curves.items():
        ax.plot(x, y, label=label, color=color_for(label), lw=2)
    ax.axhline(0.0, color="0.7", lw=0.8, zorder=0)
    ax.axvline(0.0, color="0.7", lw=0.8, zorder=0)
    ax.set_xlabel("x")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if curves:
        ax.legend(loc="best", fontsize=8)
    show_messages(ax, messages)


def plot_per_layer(ax, series: Mapping[str, np.ndarray], *, ylabel: str, title: str = "",
                   messages: Sequence[str] = (), colors: Mapping[str, str] | None = None,
                   grid: bool = False) -> None:
    """One value per layer on a log scale, layer 1 (next to the input) on the left.

    Parameters
    ----------
    ax : matplotlib Axes
    series : mapping of str to ndarray of shape (depth,)
        Label -> the value of layers ``1..depth`` (values below the smallest positive float
        are shown at it, so that a 0 stays on the log axis).
    ylabel, title : str
    messages : sequence of str
        Shown in the corner (series that could not be computed).
    colors : mapping of str to str, optional
        A color per label; default :func:`color_for` (activation names keep their colors).
    grid : bool
        Draw a grid at the major and minor ticks.
    """
    for label, values in series.items():
        values = np.maximum(np.asarray(values, dtype=np.float64), np.finfo(np.float64).tiny)
        layers = np.arange(1, values.size + 1)
        color = colors.get(label) if colors is not None else color_for(label)
        ax.plot(layers, values, marker="o", ms=3, label=label, color=color)
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = next to the input)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if grid:
        ax.grid(alpha=0.3, which="both")
    if series:
        ax.legend(fontsize=8)
    show_messages(ax, messages)


def plot_layer_norms(ax, norms: Mapping[str, np.ndarray], *, title: str = "",
                     messages: Sequence[str] = ()) -> None:
    """Gradient norm per layer on a log scale, layer 1 (next to the input) on the left.

    Parameters
    ----------
    ax : matplotlib Axes
    norms : mapping of str to ndarray of shape (depth,)
        Label -> ``||dL/dW_l||`` for ``l = 1..depth``.
    title : str
    messages : sequence of str
    """
    plot_per_layer(ax, norms, ylabel="gradient norm  ||dL/dW||", title=title,
                   messages=messages)


def plot_dead_fraction(ax, x: np.ndarray, fraction: np.ndarray, *, xlabel: str,
                       logx: bool = False, label: str | None = None) -> None:
    """Share of dead units (0 to 1) against a swept quantity (bias shift, learning rate)."""
    ax.plot(x, fraction, marker="o", label=label, color=color_for("relu"))
    ax.set_ylim(-0.03, 1.03)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("dead units (share)")
    ax.grid(alpha=0.3)


def plot_lr_sweep(ax_dead, ax_loss, sweep) -> None:
    """Dead units and final training loss against the learning rate.

    Parameters
    ----------
    ax_dead, ax_loss : matplotlib Axes
    sweep : dlopt.lessons.l01_activations.dead_relu.LRSweep
    """
    plot_dead_fraction(ax_dead, sweep.lrs, sweep.dead_fraction, xlabel="learning rate",
                       logx=True, label="all hidden units")
    for i, layer in enumerate(np.asarray(sweep.dead_per_layer).T):
        ax_dead.plot(sweep.lrs, layer, ls="--", marker=".", alpha=0.7,
                     label=f"hidden layer {i + 1}")
    ax_dead.legend(fontsize=8)
    ax_dead.set_title("dead units after training")
    ax_loss.plot(sweep.lrs, sweep.train_loss, marker="o", color="0.3")
    ax_loss.axhline(np.log(10.0), ls=":", color="0.5", label="ln 10 (uniform guess)")
    ax_loss.set_xscale("log")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("learning rate")
    ax_loss.set_ylabel("training loss after training")
    ax_loss.legend(fontsize=8)
    ax_loss.grid(alpha=0.3)


def plot_step_errors(ax, hs: np.ndarray, errors: np.ndarray, *, eps: float = 2.2e-16) -> None:
    """Error of a central difference against its step ``h`` (log-log), with guide lines.

    The guides are ``h**2`` (truncation error, dominant for large ``h``) and ``eps / h``
    (rounding error, dominant for small ``h``), both scaled to pass through the data.

    Parameters
    ----------
    ax : matplotlib Axes
    hs : ndarray, shape (k,)
    errors : ndarray, shape (k,)
        Largest absolute error of the numerical gradient at each ``h``.
    eps : float
        Machine epsilon of the arithmetic (float64 by default).
    """
    hs = np.asarray(hs, dtype=np.float64)
    errors = np.maximum(np.asarray(errors, dtype=np.float64), np.finfo(np.float64).tiny)
    best = (3 * eps) ** (1 / 3)  # minimizes h**2 / 6 + eps / h
    ax.loglog(hs, errors, marker="o", color="k", label="your central difference")
    big, small = hs >= best / 10, hs <= best * 10
    if big.any():
        i = int(np.argmax(hs))
        ax.loglog(hs[big], errors[i] * (hs[big] / hs[i]) ** 2, ls="--",
                  label="∝ h²  (truncation)")
    if small.any():
        i = int(np.argmin(hs))
        ax.loglog(hs[small], errors[i] * hs[i] / hs[small], ls=":", label="∝ ε/h  (rounding)")
    ax.axvline(best, color="0.6", lw=0.8)
    ax.set_xlabel("step h")
    ax.set_ylabel("largest error vs the analytic gradient")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
