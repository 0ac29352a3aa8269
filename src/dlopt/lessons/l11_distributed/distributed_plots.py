"""Lesson 11: the figures of the experiments. Each function takes an ``ax`` (or two) and a
result of :mod:`~dlopt.lessons.l11_distributed.gil_lab`,
:mod:`~dlopt.lessons.l11_distributed.parallel_lab` or
:mod:`~dlopt.lessons.l11_distributed.ddp_lab`; none calls pyplot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dlopt.kit import plotting
from dlopt.lessons.l11_distributed.ddp_lab import DDPResult
from dlopt.lessons.l11_distributed.gil_lab import MODES, WORKLOADS, GilResult
from dlopt.lessons.l11_distributed.parallel_lab import MB, SimulatedRuns

__all__ = ["plot_bucket_costs", "plot_ddp_drift", "plot_simulated", "plot_threads",
           "plot_zero"]


def plot_threads(ax, result: GilResult, workers: int = 2) -> None:
    """Work done per second by ``workers`` threads or processes, relative to one worker."""
    x = np.arange(len(WORKLOADS))
    width = 0.35
    for i, (mode, color) in enumerate(zip(MODES, ("tab:red", "tab:blue"), strict=True)):
        values = [result.speedup(w, mode, workers) for w in WORKLOADS]
        bars = ax.bar(x + (i - 0.5) * width, values, width, color=color,
                      label=f"{workers} {mode}")
        for bar, value in zip(bars, values, strict=True):
            ax.annotate(f"{value:.2f}x", (bar.get_x() + bar.get_width() / 2, value),
                        ha="center", va="bottom", fontsize=8)
    ax.axhline(1.0, color="k", lw=1, ls=":", label="one worker")
    ax.axhline(float(workers), color="0.5", lw=1, ls="--", label=f"{workers} workers, no waiting")
    ax.set_xticks(x, ["pure-Python loop\n(holds the lock)",
                      "torch training step\n(kernels release the lock)"])
    ax.set_ylabel("work per second, relative to 1 worker")
    ax.set_ylim(0, workers + 0.6)
    ax.set_title(f"threads vs processes ({result.cpu_count} cores usable here)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)


def plot_simulated(ax_loss, ax_dev, runs: SimulatedRuns) -> None:
    """Training loss of every run (they overlap), and each run's distance to full batch."""
    for i, (label, loss) in enumerate(runs.loss.items()):
        ax_loss.plot(np.arange(len(loss)), loss, color=plotting.color_at(i), lw=4 - 0.6 * i,
                     alpha=0.8, label=label)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss (mean cross-entropy)")
    ax_loss.set_title(f"{runs.n_examples} examples per step, every way")
    ax_loss.legend(fontsize=7)
    ax_loss.grid(alpha=0.3)
    for i, (label, dev) in enumerate(runs.deviation.items()):
        if label == "full batch":
            continue
        ax_dev.semilogy(np.arange(1, len(dev)), np.maximum(dev[1:], 1e-18), marker="o", ms=3,
                        color=plotting.color_at(i), label=label)
    ax_dev.axhline(np.finfo(np.float64).eps, color="k", lw=1, ls=":", label="float64's eps")
    ax_dev.set_ylim(1e-18, 1e-12)
    ax_dev.set_xlabel("step")
    ax_dev.set_ylabel("max |w - w_full batch| (0 drawn at 1e-18)")
    ax_dev.set_title("distance to full-batch descent")
    ax_dev.legend(fontsize=7)
    ax_dev.grid(alpha=0.3)


def _against_ranks(ax, ylabel: str, title: str) -> None:
    """Labels, legend and log grid of a log-log plot against the number of ranks k."""
    ax.set_xlabel("ranks k")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")


def plot_bucket_costs(ax, table: Mapping[float, np.ndarray], world_sizes: Sequence[int],
                      n_bytes: float) -> None:
    """All-reduce time of ``n_bytes`` against k, one curve per message size."""
    for i, (size, seconds) in enumerate(table.items()):
        label = f"{size / MB:g} MB messages" if size >= 0.1 * MB else f"{size / 1e3:g} kB messages"
        ax.loglog(world_sizes, seconds * 1e3, marker="o", ms=4, color=plotting.color_at(i),
                  label=f"{label} ({int(np.ceil(n_bytes / size))})")
    _against_ranks(ax, "all-reduce time (ms)",
                   f"ring all-reduce of {n_bytes / MB:g} MB of gradients")


def plot_zero(ax, table: Mapping[int, np.ndarray], world_sizes: Sequence[int],
              n_params: float, gpu_bytes: float | None = None) -> None:
    """Model-state bytes per rank against k, one curve per ZeRO stage."""
    names = {0: "DDP (stage 0)", 1: "ZeRO-1: optimizer states", 2: "ZeRO-2: + gradients",
             3: "ZeRO-3 / FSDP: + parameters"}
    for stage, values in table.items():
        ax.loglog(world_sizes, values / 1e9, marker="o", ms=4, color=plotting.color_at(stage),
                  label=names.get(stage, f"stage {stage}"))
    if gpu_bytes:
        ax.axhline(gpu_bytes / 1e9, color="k", ls=":", lw=1,
                   label=f"one GPU's memory ({gpu_bytes / 1e9:g} GB)")
    _against_ranks(ax, "model state per rank (GB)",
                   f"{n_params / 1e9:g}B parameters, mixed-precision Adam")


def plot_ddp_drift(ax, results: Mapping[int, DDPResult]) -> None:
    """Largest parameter difference from the one-process reference, per variant and k."""
    ks = list(results)
    variants = list(next(iter(results.values())).drift)
    width = 0.8 / len(variants)
    x = np.arange(len(ks))
    for i, variant in enumerate(variants):
        values = [max(results[k].drift[variant], 1e-12) for k in ks]
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, values, width,
               color=plotting.color_at(i), label=variant)
    ax.set_yscale("log")
    ax.axhline(np.finfo(np.float32).eps, color="k", ls=":", lw=1, label="float32's eps")
    ax.set_xticks(x, [f"k = {k}" for k in ks])
    ax.set_ylabel("max |parameter - one process's| (0 drawn at 1e-12)")
    ax.set_title("k gloo processes against one process on the combined batch")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
