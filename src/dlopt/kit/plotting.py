"""Plotting functions: each takes a matplotlib ``ax`` and data, and draws; none calls pyplot.

Notebooks pass axes from ``plt.subplots``; widgets and tests use :func:`new_figure`, a
figure with its own Agg canvas that never touches pyplot's global state or ``rcParams``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "color_for",
    "figure_png",
    "new_figure",
    "plot_curves",
    "plot_dead_fraction",
    "plot_layer_norms",
    "plot_lr_sweep",
    "plot_step_errors",
    "show_messages",
]

_NAMED = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu"]
_PALETTE = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
            "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]


def color_for(name: str) -> str:
    """A fixed color per activation name, so every plot of the course agrees."""
    if name in _NAMED:
        return _PALETTE[_NAMED.index(name)]
    return _PALETTE[len(_NAMED) + sum(map(ord, name)) % (len(_PALETTE) - len(_NAMED))]


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize=(6.4, 4.0)):
    """A figure with an Agg canvas (no pyplot) and its axes, as ``fig.subplots`` returns them.

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : Axes or ndarray of Axes
    """
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=True)


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def show_messages(ax, messages: Sequence[str]) -> None:
    """Write messages (e.g. "relu: implement `relu` first") in the corner of ``ax``."""
    if messages:
        ax.text(0.02, 0.98, "\n".join(messages), transform=ax.transAxes, va="top", ha="left",
                fontsize=8, color="tab:red",
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
    for label, values in norms.items():
        values = np.asarray(values, dtype=np.float64)
        layers = np.arange(1, values.size + 1)
        ax.plot(layers, values, marker="o", ms=3, label=label, color=color_for(label))
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = next to the input)")
    ax.set_ylabel("gradient norm  ||dL/dW||")
    ax.set_title(title)
    if norms:
        ax.legend(fontsize=8)
    show_messages(ax, messages)


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
