"""Lesson 09's timer references: the true duration of each run, and what a mistaken timer reports.

:func:`ground_truth` (the reference of ``time_with_warmup``) reads each timed run's true duration
from the :class:`~dlopt.grading.drivers.timer.FakeDevice`; :func:`measured_if` predicts what a
timer with a given classic mistake reports.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlopt.grading.drivers.timer import FakeDevice, _device_of, _summary

__all__ = ["ground_truth", "measured_if"]


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
