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

__all__ = ["FakeDevice", "run_timer"]


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








