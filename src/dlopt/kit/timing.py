"""Timing that holds up: warm-up runs, several repeats, the median and the spread.

Used by lessons 00, 03, 06, 08, 09 and 10, and by :mod:`dlopt.lessons.l09_performance.gpu_timing`.

On a GPU, work is queued asynchronously: pass ``sync=torch.cuda.synchronize`` so each
measurement waits for the device (lesson 09 explains why and uses CUDA events as well).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Timing", "measure"]


@dataclass(frozen=True)
class Timing:
    """Seconds per call over ``len(runs)`` measured repeats (warm-up runs excluded)."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def spread(self) -> float:
        """Interquartile range of the runs, in seconds (0 for fewer than two runs)."""
        if len(self.runs) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.runs, n=4, method="inclusive")
        return q3 - q1

    def __str__(self) -> str:
        return f"{_human(self.median)} ± {_human(self.spread)} (median ± IQR of {len(self.runs)})"


def _human(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def measure(fn: Callable[[], object], *, repeat: int = 7, warmup: int = 1,
            number: int = 1, sync: Callable[[], object] | None = None) -> Timing:
    """Time ``fn()``: ``warmup`` discarded calls, then ``repeat`` measurements of ``number`` calls.

    Parameters
    ----------
    fn : callable taking no arguments
    repeat : int
        Number of measurements (each is the mean over ``number`` calls).
    warmup : int
        Calls made first and discarded (caches, lazy initialisation, compilation).
    number : int
        Calls per measurement, for functions too fast to time one call at a time.
    sync : callable, optional
        Called before starting and before stopping the clock (``torch.cuda.synchronize``).
    """
    if repeat < 1 or number < 1 or warmup < 0:
        raise ValueError("repeat and number must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        if sync is not None:
            sync()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if sync is not None:
            sync()
        runs.append((time.perf_counter() - start) / number)
    return Timing(tuple(runs))
