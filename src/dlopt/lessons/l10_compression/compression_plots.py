"""Lesson 10: the figures of the compression experiments, and the quantization explorer.

Plotting functions take an ``ax`` (or two) and a result of
:mod:`~dlopt.lessons.l10_compression.pruning_lab`, :mod:`~dlopt.lessons.l10_compression.quant_lab`
or :mod:`~dlopt.lessons.l10_compression.distill_lab`; none calls pyplot.
:class:`QuantizationExplorer` wires three controls (bits, per tensor or per channel,
symmetric or affine) to a histogram of a weight matrix and its quantization error
(:class:`dlopt.kit.figure_widget.FigureWidget`: Agg, no pyplot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import ipywidgets as W
import numpy as np

from dlopt.kit import plotting
from dlopt.kit.figure_widget import FigureWidget
from dlopt.kit.learner import probe
from dlopt.lessons.l10_compression.distill_lab import DistillationResult
from dlopt.lessons.l10_compression.pruning_lab import RegrowthRun, SparsitySweep, StorageSweep
from dlopt.lessons.l10_compression.quant_lab import (
    MODES,
    ErrorCurve,
    QATRun,
    error_vs_bits,
    problem_with_quantization,
    quantize_weight,
)

__all__ = [
    "QuantizationExplorer",
    "plot_distillation",
    "plot_error_vs_bits",
    "plot_ptq",
    "plot_qat",
    "plot_regrowth",
    "plot_sparsity_sweep",
    "plot_storage",
    "plot_quantized_weights",
]

_KIND_COLORS = {"unstructured": "tab:blue", "structured": "tab:orange"}
_MODE_COLORS = {label: color for (label, _, _), color in
                zip(MODES, ["tab:blue", "tab:cyan", "tab:red", "tab:orange"], strict=True)}


def plot_sparsity_sweep(ax, sweep: SparsitySweep) -> None:
    """Test accuracy against the share of weights removed: one-shot (dashed), fine-tuned (solid)."""
    for key, acc in sweep.accuracy.items():
        kind, when = key.split(", ")
        ax.plot(sweep.removed[kind], acc, marker="o", ms=4, color=_KIND_COLORS[kind],
                ls="-" if when == "fine-tuned" else "--", label=key)
    ax.axhline(sweep.dense_accuracy, color="k", lw=1, ls=":",
               label=f"dense ({sweep.dense_accuracy:.3f})")
    ax.axhline(0.1, color="0.6", lw=0.8, ls=":", label="chance (0.1)")
    ax.set_xlabel("share of the weights removed")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(f"pruning a trained MLP (fine-tuning: {sweep.finetune_steps} steps, mask kept)")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)


def plot_regrowth(ax, runs: Mapping[str, RegrowthRun]) -> None:
    """Share of the pruned weights that are nonzero again, against fine-tuning steps."""
    styles = [("tab:red", "-", 5, 0.45), ("tab:purple", "--", 2, 1.0), ("tab:gray", "-", 5, 0.45),
              ("tab:green", "--", 2, 1.0)]  # the curves overlap in pairs: wide and faint, dashed
    for (label, run), (color, ls, lw, alpha) in zip(runs.items(), styles, strict=False):
        ax.plot(run.steps, run.regrown, color=color, ls=ls, lw=lw, alpha=alpha,
                label=f"{label} (acc {run.test_accuracy:.3f})")
    ax.set_xlabel("fine-tuning steps after pruning")
    ax.set_ylabel("pruned weights nonzero again (share)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("does the pruned network stay pruned?")
    ax.legend(fontsize=7, loc="center right")
    ax.grid(alpha=0.3)


def plot_storage(ax_bytes, ax_time, sweep: StorageSweep) -> None:
    """Bytes and matmul time of a dense and a CSR matrix against sparsity."""
    s = sweep.sparsities
    ax_bytes.plot(s, np.full(s.shape, sweep.dense_bytes / 1024), color="k", marker="o", ms=3,
                  label="dense (float32)")
    ax_bytes.plot(s, sweep.csr_bytes / 1024, color="tab:green", marker="o", ms=3,
                  label="CSR (float32 values, int32 indices)")
    ax_bytes.set_xlabel("sparsity (share of zeros)")
    ax_bytes.set_ylabel("KiB")
    ax_bytes.set_title(f"storage of a {sweep.shape[0]}x{sweep.shape[1]} weight")
    ax_bytes.legend(fontsize=7)
    ax_bytes.grid(alpha=0.3)
    for kind, color, label in (("dense", "k", "dense (torch.mm, 1 thread)"),
                               ("csr", "tab:green", "CSR (scipy)")):
        quartiles = np.array([np.percentile(t.runs, [25, 75]) for t in getattr(sweep, kind)]) * 1e3
        ax_time.plot(s, sweep.seconds(kind) * 1e3, color=color, marker="o", ms=3, label=label)
        ax_time.fill_between(s, quartiles[:, 0], quartiles[:, 1], color=color, alpha=0.15)
    ax_time.set_yscale("log")
    ax_time.set_xlabel("sparsity (share of zeros)")
    ax_time.set_ylabel("ms per W @ X (median, IQR band)")
    ax_time.set_title(f"matmul time, X of {sweep.batch} columns")
    ax_time.legend(fontsize=7)
    ax_time.grid(alpha=0.3, which="both")


def plot_error_vs_bits(ax, curves: Mapping[str, ErrorCurve], *, selected: str | None = None,
                       marker_bits: int | None = None) -> None:
    """Measured RMSE (solid) and the ``s / sqrt(12)`` prediction (dashed) against bits."""
    for label, curve in curves.items():
        color = _MODE_COLORS.get(label, "tab:gray")
        width = 2.5 if label == selected else 1.2
        alpha = 1.0 if selected is None or label == selected else 0.35
        ax.semilogy(curve.bits, curve.rmse, color=color, lw=width, alpha=alpha, marker="o",
                    ms=3, label=f"{label}: measured")
        ax.semilogy(curve.bits, curve.predicted, color=color, lw=1, alpha=alpha, ls="--")
        if label == selected and marker_bits is not None and marker_bits in curve.bits:
            i = list(curve.bits).index(marker_bits)
            ax.plot([marker_bits], [curve.rmse[i]], "o", ms=9, mfc="none", color=color)
    ax.plot([], [], color="0.4", ls="--", label="s / sqrt(12) (dashed)")
    ax.set_xlabel("bits")
    ax.set_ylabel("RMSE of the quantized weights")
    ax.set_title("quantization error against bits")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")


def plot_quantized_weights(ax, w: np.ndarray, wq: np.ndarray, *, title: str = "",
                          levels: np.ndarray | None = None) -> None:
    """Histogram of the weights and of their quantized values; per-tensor levels as lines.

    The y axis stops at 1.6 times the weights' tallest bar: the quantized values pile up on a
    few levels, and their bars are cut there.
    """
    w, wq = np.ravel(w), np.ravel(wq)
    edges = np.linspace(min(w.min(), wq.min()), max(w.max(), wq.max()), 81)
    counts, _, _ = ax.hist(w, bins=edges, color="tab:blue", alpha=0.45, label="weights")
    ax.hist(wq, bins=edges, histtype="step", color="tab:red", lw=1.5,
            label="quantized (tall bars cut)")
    ax.set_ylim(0, 1.6 * max(counts.max(), 1))
    if levels is not None:
        for level in levels:
            ax.axvline(level, color="tab:red", lw=0.6, alpha=0.5)
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")


def plot_ptq(ax, ptq: Mapping[str, Mapping[int, float]], float_accuracy: float) -> None:
    """Bars: test accuracy after post-training quantization, by bits and granularity."""
    groups = list(ptq)
    bits = sorted({b for table in ptq.values() for b in table}, reverse=True)
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(bits))
    for i, (group, color) in enumerate(zip(groups, ["tab:blue", "tab:red"], strict=False)):
        values = [ptq[group].get(b, np.nan) for b in bits]
        bars = ax.bar(x + (i - (len(groups) - 1) / 2) * width, values, width, color=color,
                      label=group)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(float_accuracy, color="k", ls=":", lw=1, label=f"float ({float_accuracy:.3f})")
    ax.set_xticks(x, [f"{b} bits" for b in bits])
    ax.set_ylim(0.0, 1.08)
    ax.set_ylabel("test accuracy")
    ax.set_title("post-training quantization of the weights")
    ax.legend(fontsize=7, loc="lower left")


def plot_qat(ax, runs: Mapping[str, QATRun]) -> None:
    """Test accuracy of the quantized network during quantization-aware training."""
    for (label, run), color in zip(runs.items(), ["tab:blue", "tab:red"], strict=False):
        ax.plot(run.steps, run.test_accuracy, marker="o", ms=3, color=color, label=label)
    if runs:
        first = next(iter(runs.values()))
        ax.axhline(first.float_accuracy, color="k", ls=":", lw=1,
                   label=f"float ({first.float_accuracy:.3f})")
        ax.set_title(f"quantization-aware training, {first.bits} bits")
    ax.set_xlabel("QAT steps (0 = post-training quantization)")
    ax.set_ylabel("test accuracy, quantized")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)


def plot_distillation(ax, result: DistillationResult) -> None:
    """Test accuracy of each student during training, with the teacher's."""
    palette = {"cross-entropy, few labels": "tab:gray", "distilled, with T²": "tab:green",
               "distilled, without T²": "tab:olive", "cross-entropy, all labels": "k"}
    for label, curve in result.curves.items():
        ax.plot(result.steps, curve, color=palette.get(label, "tab:blue"), lw=2,
                ls=":" if label == "cross-entropy, all labels" else "-",
                label=f"{label} ({result.student_accuracy[label]:.3f})")
    ax.axhline(result.teacher_accuracy, color="tab:purple", ls="--", lw=1,
               label=f"teacher ({result.teacher_accuracy:.3f})")
    ax.set_xlabel("training steps of the student")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(f"student {result.student_sizes}: {result.n_labelled} labels, "
                 f"T = {result.T:g}, alpha = {result.alpha:g}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)


class QuantizationExplorer(FigureWidget):
    """Quantize a weight matrix with the learner's functions; see its histogram and error.

    Left: the weights and their quantized values for the chosen bits, granularity and
    scheme, with the measured RMSE and the ``s / sqrt(12)`` prediction in the title. Right:
    RMSE against bits for the four modes (the chosen one highlighted).

    Parameters
    ----------
    w : ndarray, shape (out, in)
        The weight matrix (per channel = per row).
    quant_fn, fake_fn : callable
        The learner's ``quant_params`` and ``fake_quantize``.
    message : str, optional
        Shown instead of the figure (e.g. "implement `quant_params` first").
    bits : int
        Initial bit width, 2 to 8.
    """

    figsize = (10.0, 3.8)
    margins = {"left": 0.07, "right": 0.985, "bottom": 0.14, "top": 0.9, "wspace": 0.22}

    def __init__(self, w: np.ndarray, quant_fn: Callable, fake_fn: Callable,
                 message: str | None = None, *, bits: int = 4):
        self.w = np.asarray(w, dtype=np.float64)
        self.quant_fn, self.fake_fn = quant_fn, fake_fn
        self.problem = message
        self.curves: dict[str, ErrorCurve] = {}
        if not message:
            self.problem = problem_with_quantization(quant_fn, fake_fn)
        if not self.problem:
            self.curves, self.problem = probe(error_vs_bits, self.w, quant_fn, fake_fn)
        self.bits = W.IntSlider(value=bits, min=2, max=8, description="bits",
                                continuous_update=False)
        self.granularity = W.ToggleButtons(options=["per-tensor", "per-channel"],
                                           value="per-tensor")
        self.scheme = W.ToggleButtons(options=["symmetric", "affine"], value="symmetric")
        super().__init__([self.bits, self.granularity, self.scheme])
        self.redraw()

    @property
    def mode(self) -> str:
        return f"{self.granularity.value}, {self.scheme.value}"

    def draw(self, fig, axes) -> list[str]:
        if self.problem:
            for ax in axes:
                plotting.show_messages(ax, [self.problem])
                ax.set_axis_off()
            return [self.problem]
        bits = int(self.bits.value)
        per_channel = self.granularity.value == "per-channel"
        symmetric = self.scheme.value == "symmetric"
        quantized, problem = probe(quantize_weight, self.w, bits, self.quant_fn, self.fake_fn,
                                   per_channel=per_channel, symmetric=symmetric)
        if problem:
            for ax in axes:
                plotting.show_messages(ax, [problem])
            return [problem]
        wq, scales, grad_mask = quantized
        rmse = float(np.sqrt(np.mean((wq - self.w) ** 2)))
        predicted = float(np.sqrt(np.mean(scales**2) / 12.0))
        levels = np.unique(wq) if not per_channel and bits <= 4 else None
        plot_quantized_weights(
            axes[0], self.w, wq, levels=levels,
            title=(f"{bits} bits, {self.mode}: RMSE {rmse:.2e}, s/sqrt(12) {predicted:.2e}, "
                   f"clamped {np.mean(~grad_mask):.1%}"))
        plot_error_vs_bits(axes[1], self.curves, selected=self.mode, marker_bits=bits)
        return []
