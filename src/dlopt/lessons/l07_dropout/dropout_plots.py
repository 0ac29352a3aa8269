"""Lesson 07: figures of the dropout experiments, and the overfitting explorer.

Plotting functions take an ``ax`` and a result of :mod:`dlopt.lessons.l07_dropout.dropout_lab`;
the explorer only wires a slider to them (:class:`dlopt.kit.figure_widget.FigureWidget`: Agg,
no pyplot).
"""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as W
import numpy as np

from dlopt.kit import plotting
from dlopt.kit.figure_widget import FigureWidget
from dlopt.lessons.l07_dropout.dropout_lab import (
    DropoutRun,
    EnsembleResult,
    ExpectationResult,
    OverfittingSweep,
)

__all__ = [
    "OverfittingExplorer",
    "plot_ensemble_accuracy",
    "plot_ensemble_gaps",
    "plot_expectation",
    "plot_final_vs_p",
    "plot_learning_curves",
]

TRAIN_COLOR = plotting.color_at(0)
VAL_COLOR = plotting.color_at(1)


def plot_expectation(ax, result: ExpectationResult) -> None:
    """Relative error of the running mean of dropout draws against the number of draws.

    Parameters
    ----------
    ax : matplotlib Axes
    result : dlopt.lessons.l07_dropout.dropout_lab.ExpectationResult
    """
    ax.loglog(result.draws, result.inverted, color="tab:green",
              label="your dropout_forward (mask / (1 - p))")
    ax.loglog(result.draws, result.unscaled, color="tab:red",
              label="the same mask without 1 / (1 - p)")
    ax.loglog(result.draws, result.predicted, ls="--", color="0.4",
              label="sqrt(p / ((1 - p) n))")
    ax.set_xlabel("number of draws n averaged")
    ax.set_ylabel("relative error of the mean vs x")
    ax.set_title(f"E[out] = x?  (p = {result.p:g})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")


def plot_ensemble_accuracy(ax, result: EnsembleResult) -> None:
    """Accuracy of the average of k sampled sub-networks, against k (log scale).

    Parameters
    ----------
    ax : matplotlib Axes
    result : dlopt.lessons.l07_dropout.dropout_lab.EnsembleResult
    """
    ax.semilogx(result.sizes, result.ensemble_accuracy, color="tab:purple",
                label="average of k sub-networks")
    ax.axhline(result.eval_accuracy, color="k", ls="--",
               label=f"evaluation-mode network ({result.eval_accuracy:.3f})")
    single = float(np.mean(result.single_accuracy))
    ax.axhline(single, color="tab:gray", ls=":", label=f"one sub-network, mean ({single:.3f})")
    values = np.concatenate([result.ensemble_accuracy, [result.eval_accuracy, single]])
    ax.set_ylim(values.min() - 0.01, min(1.0, values.max() + 0.01))
    ax.set_xlabel("number of sub-networks k")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"dropout p = {result.p:g}: sampled sub-networks")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")


def plot_ensemble_gaps(ax, results: Mapping[str, EnsembleResult]) -> None:
    """Distance between the k-sub-network average and the evaluation-mode network (log-log).

    Solid: the normalized geometric mean (softmax of the mean logits); dotted: the arithmetic
    mean of probabilities. A dashed ``1/sqrt(k)`` guide starts at the first solid curve.

    Parameters
    ----------
    ax : matplotlib Axes
    results : mapping of str to EnsembleResult
        Label (e.g. "1 hidden layer") -> result.
    """
    for i, (label, result) in enumerate(results.items()):
        color = plotting.color_at(4 + i)  # after the blue, orange, green and red of the others
        ax.loglog(result.sizes, result.geometric_gap, color=color,
                  label=f"{label}: geometric mean")
        ax.loglog(result.sizes, result.arithmetic_gap, color=color, ls=":",
                  label=f"{label}: arithmetic mean")
    if results:
        first = next(iter(results.values()))
        ax.loglog(first.sizes, first.geometric_gap[0] / np.sqrt(first.sizes), ls="--",
                  color="0.5", label="∝ 1/sqrt(k)")
    ax.set_xlabel("number of sub-networks k")
    ax.set_ylabel("distance to eval-mode probabilities")
    ax.set_title("average of k sub-networks vs evaluation mode")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")


def plot_learning_curves(ax, run: DropoutRun, *, metric: str = "accuracy",
                         baseline: DropoutRun | None = None,
                         label_noise: float | None = None) -> None:
    """Training and validation curves of one run, optionally over a faint baseline run.

    Parameters
    ----------
    ax : matplotlib Axes
    run : dlopt.lessons.l07_dropout.dropout_lab.DropoutRun
    metric : {"accuracy", "loss"}
    baseline : DropoutRun, optional
        Drawn thin and faded (e.g. the run without dropout).
    label_noise : float, optional
        With ``metric="accuracy"``, a line at ``1 - label_noise``: the share of correct
        training labels.
    """
    if metric not in ("accuracy", "loss"):
        raise ValueError(f"metric must be 'accuracy' or 'loss', got {metric!r}")
    for r, alpha, lw, suffix in ((baseline, 0.35, 1.0, " (p = 0)"), (run, 1.0, 2.0, "")):
        if r is None:
            continue
        ax.plot(r.steps, getattr(r, f"train_{metric}"), color=TRAIN_COLOR, alpha=alpha, lw=lw,
                label=f"training{suffix}")
        ax.plot(r.steps, getattr(r, f"val_{metric}"), color=VAL_COLOR, alpha=alpha, lw=lw,
                label=f"validation{suffix}")
    if metric == "accuracy":
        if label_noise:
            ax.axhline(1.0 - label_noise, color="0.4", ls=":", lw=1,
                       label="share of correct training labels")
        ax.set_ylim(0.0, 1.02)
    else:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"p = {run.p:g}: gap {run.gap:+.3f} (train - val accuracy)")
    ax.legend(fontsize=7, loc="lower right" if metric == "accuracy" else "upper right")
    ax.grid(alpha=0.3)


def plot_final_vs_p(ax, sweep: OverfittingSweep, *, metric: str = "accuracy",
                    selected: float | None = None) -> None:
    """Final training and validation metric against the drop probability.

    Parameters
    ----------
    ax : matplotlib Axes
    sweep : dlopt.lessons.l07_dropout.dropout_lab.OverfittingSweep
    metric : {"accuracy", "loss"}
    selected : float, optional
        A p to mark with a vertical line.
    """
    ax.plot(sweep.ps, sweep.final(f"train_{metric}"), marker="o", color=TRAIN_COLOR,
            label="training (eval mode)")
    ax.plot(sweep.ps, sweep.final(f"val_{metric}"), marker="o", color=VAL_COLOR,
            label="validation")
    if metric == "accuracy" and sweep.label_noise:
        ax.axhline(1.0 - sweep.label_noise, color="0.4", ls=":", lw=1,
                   label="share of correct training labels")
    if metric == "loss":
        ax.set_yscale("log")
    if selected is not None:
        ax.axvline(selected, color="0.3", lw=0.8)
    ax.set_xlabel("drop probability p")
    ax.set_ylabel(f"final {metric}")
    ax.set_title(f"{sweep.n_train} training examples, {sweep.label_noise:.0%} mislabelled")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


class OverfittingExplorer(FigureWidget):
    """Pick a drop probability; see its learning curves and where it sits among the others.

    Left: training and validation curves for the selected ``p`` over those of ``p = 0``.
    Right: final training and validation values against ``p``. The runs are computed
    beforehand (:func:`dlopt.lessons.l07_dropout.dropout_lab.overfitting_sweep`); the slider
    only selects.

    Parameters
    ----------
    sweep : OverfittingSweep or None
        None when the sweep could not run; ``message`` then says why.
    message : str, optional
        Shown instead of the figure's content, e.g. "implement `dropout_backward` first".
    p : float, optional
        Initially selected drop probability (default: the middle of ``sweep.ps``).
    """

    figsize = (10.0, 3.8)

    def __init__(self, sweep: OverfittingSweep | None, message: str | None = None, *,
                 p: float | None = None):
        self.sweep = sweep
        self.problem = message
        ps = [] if sweep is None else [float(v) for v in sweep.ps]
        options = [(f"{v:g}", v) for v in ps] or [("-", 0.0)]
        values = [value for _, value in options]
        start = p if p in values else values[len(values) // 2]
        self.p = W.SelectionSlider(options=options, value=start, description="dropout p",
                                   continuous_update=False)
        self.metric = W.ToggleButtons(options=["accuracy", "loss"], value="accuracy",
                                      description="metric")
        super().__init__([self.p, self.metric])
        self.redraw()

    def draw(self, fig, axes) -> list[str]:
        if self.sweep is None:
            message = self.problem or "no sweep to show"
            for ax in axes:
                plotting.show_messages(ax, [message])
                ax.set_axis_off()
            return [message]
        ps = [float(v) for v in self.sweep.ps]
        run = self.sweep.runs[ps.index(self.p.value)]
        baseline = self.sweep.runs[ps.index(0.0)] if 0.0 in ps and run.p != 0.0 else None
        plot_learning_curves(axes[0], run, metric=self.metric.value, baseline=baseline,
                             label_noise=self.sweep.label_noise)
        plot_final_vs_p(axes[1], self.sweep, metric=self.metric.value, selected=run.p)
        return []
