"""A simulated GPU with a fake clock: asynchronous launches, a queue, ``synchronize``.

A real GPU cannot be had in every classroom, and its timings are never the same twice. The
:class:`FakeDevice` here behaves like one, deterministically:

- ``device.kernel()`` *launches* the next kernel: the host pays ``launch_seconds`` and goes
  on at once; the kernel runs on the device after the kernels queued before it, for
  ``costs[k]`` seconds (``k`` counts the calls: the first calls are typically slow, as on a
  real GPU where they pay for lazy initialization, memory allocation and autotuning).
- ``device.clock()`` reads the host's clock (like ``time.perf_counter``).
- ``device.synchronize()`` makes the host wait until the queue is empty (like
  ``torch.cuda.synchronize``).

A timer that forgets to synchronize measures the launches, not the work; one that does not
warm up measures the slow first calls; one that times right after the warm-up without a
synchronize bills the queued warm-up work to its first run. :func:`run_timer` is the driver
of lesson 09's ``time_with_warmup`` check; :func:`ground_truth` (the reference) reads each
timed run's true duration from the device instead of measuring it, and :func:`measured_if`
predicts what a timer with a given classic mistake reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["FakeDevice", "ground_truth", "measured_if", "plot_timeline", "run_timer"]


class FakeDevice:
    """A deterministic asynchronous device (see the module's docstring).

    Parameters
    ----------
    costs : sequence of float
        Device seconds of the k-th kernel launched; launching more kernels than there are
        costs raises ``RuntimeError``.
    launch_seconds : float
        Host seconds per launch.

    Attributes
    ----------
    calls : int
        Kernels launched so far.
    syncs : int
        Calls of :meth:`synchronize` so far.
    log : list of (str, float, float)
        ``("launch", start, end)`` on the host, ``("kernel", start, end)`` on the device,
        ``("sync", start, end)`` on the host, ``("clock", t, t)``: for drawing a timeline.
    """

    def __init__(self, costs: Sequence[float], launch_seconds: float = 1e-5):
        self.costs = [float(c) for c in costs]
        self.launch_seconds = float(launch_seconds)
        self.host = 0.0  # the host's clock
        self.busy_until = 0.0  # when the device's queue is empty
        self.calls = 0
        self.syncs = 0
        self.log: list[tuple[str, float, float]] = []

    def kernel(self) -> None:
        """Launch the next kernel and return at once (the work is queued)."""
        if self.calls >= len(self.costs):
            raise RuntimeError(
                f"fn was called {self.calls + 1} times; this scenario expects "
                f"warmup + repeat = {len(self.costs)} calls at most")
        start = self.host
        self.host += self.launch_seconds
        self.log.append(("launch", start, self.host))
        begin = max(self.host, self.busy_until)
        self.busy_until = begin + self.costs[self.calls]
        self.log.append(("kernel", begin, self.busy_until))
        self.calls += 1

    def clock(self) -> float:
        """The host's time in seconds."""
        self.log.append(("clock", self.host, self.host))
        return self.host

    def synchronize(self) -> None:
        """Wait until every launched kernel has finished."""
        start = self.host
        self.host = max(self.host, self.busy_until)
        self.syncs += 1
        self.log.append(("sync", start, self.host))


def _summary(runs) -> dict:
    runs = np.asarray(runs, dtype=np.float64)
    q1, q3 = np.percentile(runs, [25, 75])
    return {"runs": runs, "median": float(np.median(runs)), "iqr": float(q3 - q1)}


def run_timer(timer: Callable, costs, launch_seconds: float = 1e-5, warmup: int = 3,
              repeat: int = 7) -> dict:
    """Driver: run a timer on a fresh :class:`FakeDevice` and report what it measured.

    Calls ``timer(device.kernel, device.clock, device.synchronize, warmup=warmup,
    repeat=repeat)``, the interface of lesson 09's ``time_with_warmup``.

    Parameters
    ----------
    timer : callable
        Returns a dict with keys ``"runs"`` (``repeat`` seconds), ``"median"`` and ``"iqr"``.
    costs : sequence of float
        Device seconds of each kernel, in launch order (``warmup + repeat`` of them).
    launch_seconds : float
    warmup, repeat : int

    Returns
    -------
    dict
        ``"runs"`` (float64 array), ``"median"``, ``"iqr"`` (floats), as the timer returned
        them, and ``"calls"``: how many kernels the timer launched.

    Raises
    ------
    ValueError
        If the timer returns something other than a dict with those keys.
    """
    device = FakeDevice(costs, launch_seconds)
    out = timer(device.kernel, device.clock, device.synchronize, warmup=warmup, repeat=repeat)
    if not isinstance(out, dict) or not {"runs", "median", "iqr"} <= set(out):
        raise ValueError("time_with_warmup must return a dict with keys 'runs', 'median' and "
                         f"'iqr'; got {type(out).__name__}"
                         + (f" with keys {sorted(out)}" if isinstance(out, dict) else ""))
    return {"runs": np.asarray(out["runs"], dtype=np.float64).copy(),
            "median": float(out["median"]), "iqr": float(out["iqr"]), "calls": device.calls}


def _device_of(fn) -> FakeDevice:
    device = getattr(fn, "__self__", None)
    if not isinstance(device, FakeDevice):
        raise TypeError("ground_truth and measured_if need fn = FakeDevice.kernel (use run_timer)")
    return device


def ground_truth(fn, clock, sync, warmup: int = 3, repeat: int = 7) -> dict:
    """The reference: the true duration of each timed run, read from the device.

    Launches the ``warmup + repeat`` kernels (so the call count is right) and returns, for
    the runs after the warm-up, launch time plus kernel time: how long each call keeps the
    host waiting for its result. Nothing is measured with ``clock``.
    """
    device = _device_of(fn)
    for _ in range(warmup + repeat):
        fn()
    sync()
    runs = [device.launch_seconds + c for c in device.costs[warmup:warmup + repeat]]
    return _summary(runs)


def _leftover_first_run(device: FakeDevice, warmup: int, repeat: int) -> list[float]:
    """Runs timed right after an unsynchronized warm-up: the queue lands in run 1."""
    sim = FakeDevice(device.costs, device.launch_seconds)
    for _ in range(warmup):
        sim.kernel()
    runs = []
    for _ in range(repeat):
        start = sim.host
        sim.kernel()
        sim.synchronize()
        runs.append(sim.host - start)
    return runs


def measured_if(mistake: str) -> Callable:
    """What a timer with a classic mistake reports, as a function with the timer's interface.

    Parameters
    ----------
    mistake : str
        ``"no_sync"`` (the clock never waits for the device: each run is one launch),
        ``"no_warmup"`` (the first ``repeat`` calls are timed), ``"includes_warmup"`` (every
        call is timed and kept), ``"warmup_in_first_run"`` (no synchronize between the
        warm-up and the first timed run), ``"mean"`` (the mean instead of the median),
        ``"std"`` (the standard deviation instead of the interquartile range) or
        ``"one_stopwatch"`` (all runs timed together; each run reported as the average).

    Returns
    -------
    callable
        ``(fn, clock, sync, warmup, repeat) -> dict`` like the timer, for :func:`run_timer`.
    """

    def predicted(fn, clock, sync, warmup: int = 3, repeat: int = 7) -> dict:
        device = _device_of(fn)
        launch, costs = device.launch_seconds, device.costs
        calls = warmup + repeat
        true_runs = [launch + c for c in costs[warmup:warmup + repeat]]
        if mistake == "no_sync":
            runs = [launch] * repeat
        elif mistake == "no_warmup":
            runs, calls = [launch + c for c in costs[:repeat]], repeat
        elif mistake == "includes_warmup":
            runs = [launch + c for c in costs[:warmup + repeat]]
        elif mistake == "warmup_in_first_run":
            runs = _leftover_first_run(device, warmup, repeat)
        elif mistake == "one_stopwatch":
            sim = FakeDevice(costs, launch)
            for _ in range(warmup):
                sim.kernel()
            sim.synchronize()
            start = sim.host
            for _ in range(repeat):
                sim.kernel()
            sim.synchronize()
            runs = [(sim.host - start) / repeat] * repeat
        elif mistake in ("mean", "std"):
            runs = true_runs
        else:
            raise ValueError(f"unknown mistake {mistake!r}")
        for _ in range(calls):
            fn()
        summary = _summary(runs)
        if mistake == "mean":
            summary["median"] = float(np.mean(runs))
        if mistake == "std":
            summary["iqr"] = float(np.std(runs))
        return summary

    predicted.__name__ = f"measured_if_{mistake}"
    return predicted


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
