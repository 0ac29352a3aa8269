"""Lesson 09: the figure of a simulated device, what the host and the device did, and when."""

from __future__ import annotations

from dlopt.grading.drivers.timer import FakeDevice

__all__ = ["FakeDevice", "plot_timeline"]  # FakeDevice: the device the timeline shows


def plot_timeline(ax, device: FakeDevice, *, title: str = "", unit: float = 1e-3) -> None:
    """Draw a :class:`FakeDevice`'s log: host launches and syncs above, kernels below.

    Parameters
    ----------
    ax : matplotlib Axes
    device : FakeDevice
        After a timer ran on it.
    title : str
    unit : float
        Seconds per unit of the x axis (default milliseconds).
    """
    colors = {"launch": "tab:blue", "sync": "tab:gray", "kernel": "tab:orange"}
    rows = {"launch": 1, "sync": 1, "kernel": 0}
    for kind, start, end in device.log:
        if kind == "clock":
            ax.axvline(start / unit, color="tab:red", lw=0.8, alpha=0.7)
            continue
        width = max((end - start) / unit, 1e-4)
        ax.broken_barh([(start / unit, width)], (rows[kind] - 0.35, 0.7),
                       facecolors=colors[kind], edgecolor="white", linewidth=0.3)
    ax.set_yticks([0, 1], ["device\n(kernels)", "host\n(launch, sync)"])
    ax.set_xlabel("time (ms)" if unit == 1e-3 else f"time (units of {unit:g} s)")
    ax.set_ylim(-0.6, 1.6)
    if title:
        ax.set_title(title, fontsize=10)
