"""Lesson 09: timing on any device, synchronize, CUDA events, warm-up, median and spread.

:mod:`dlopt.kit.timing` times with the host's clock and an optional ``sync``. This module adds
what a GPU needs:

- :func:`device_sync` returns the function that waits for a device (``torch.cuda.synchronize``,
  ``torch.mps.synchronize``, or nothing on the CPU, whose operations finish before they return).
- :func:`measure_device` times a function on a device: discarded warm-up calls, then
  ``repeat`` runs. On CUDA each run is bracketed by two CUDA *events* recorded in the stream,
  so the time is the GPU's own, with no host overhead between the two marks; elsewhere it uses
  the host clock with a synchronize before each reading.
- :func:`launch_vs_finish` shows what an asynchronous launch does to a naive timer: the time
  to *queue* the work against the time to *finish* it.
- :func:`first_and_rest` separates the first call (lazy initialization, allocation, caches,
  compilation) from the steady state.
- :func:`cpu_threads` (:func:`dlopt.kit.threads.cpu_threads`, the course's one thread context,
  offered here for the lesson's timing cells) sets torch's CPU threads for a block: on a
  shared machine, threads that wait for a busy core make short operations many times slower,
  and one thread is steadiest.

Every function returns :class:`dlopt.kit.timing.Timing` (median and interquartile range), or
plain numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dlopt.kit.threads import cpu_threads
from dlopt.kit.timing import Timing, measure

__all__ = ["cpu_threads", "device_sync", "first_and_rest", "launch_vs_finish", "measure_device"]


def _no_sync() -> None:
    """The CPU's synchronize: nothing to wait for."""


def device_sync(device: str) -> Callable[[], None]:
    """The function that blocks until ``device`` has finished all queued work.

    Parameters
    ----------
    device : str
        ``"cuda"`` (or ``"cuda:0"``...), ``"mps"`` or ``"cpu"``.

    Returns
    -------
    callable taking no arguments
    """
    import torch

    kind = str(device).split(":")[0]
    if kind == "cuda":
        return torch.cuda.synchronize
    if kind == "mps":
        return torch.mps.synchronize
    if kind == "cpu":
        return _no_sync
    raise ValueError(f"unknown device {device!r}; expected 'cuda', 'mps' or 'cpu'")


def measure_device(fn: Callable[[], object], device: str = "cpu", *, repeat: int = 7,
                   warmup: int = 2, number: int = 1, events: bool = True) -> Timing:
    """Time ``fn()`` on ``device``: ``warmup`` discarded calls, then ``repeat`` runs.

    Parameters
    ----------
    fn : callable taking no arguments
        Launches the work (on a GPU it returns before the work is done).
    device : str
        ``"cuda"``, ``"mps"`` or ``"cpu"``.
    repeat : int
        Number of timed runs.
    warmup : int
        Calls made first and discarded, followed by a synchronize.
    number : int
        Calls per run (each run's time is divided by it), for very short functions.
    events : bool
        On CUDA, time with CUDA events (default) rather than the host clock.

    Returns
    -------
    Timing
        Seconds per call of each run; ``.median`` and ``.spread`` (interquartile range).
    """
    if repeat < 1 or number < 1 or warmup < 0:
        raise ValueError("repeat and number must be >= 1 and warmup >= 0")
    sync = device_sync(device)
    if not (events and str(device).startswith("cuda")):
        return measure(fn, repeat=repeat, warmup=warmup, number=number, sync=sync)
    import torch

    for _ in range(warmup):
        fn()
    sync()
    pairs = []
    for _ in range(repeat):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(number):
            fn()
        end.record()
        pairs.append((start, end))
    sync()  # once, after every run: no host stall between runs
    return Timing(tuple(s.elapsed_time(e) / 1e3 / number for s, e in pairs))


def launch_vs_finish(fn: Callable[[], object], device: str = "cpu", *,
                     calls: int = 20) -> tuple[float, float]:
    """Seconds per call to *launch* ``fn`` and to *finish* it, over ``calls`` calls.

    The first number is what a timer without synchronize reports; the second waits for the
    device at the end. On the CPU both are the same (work is done when ``fn`` returns); on a
    GPU the first can be much smaller, until the queue of launched work fills up.

    Returns
    -------
    launch_seconds, finish_seconds : float
    """
    sync = device_sync(device)
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    launched = time.perf_counter()
    sync()
    finished = time.perf_counter()
    return (launched - start) / calls, (finished - start) / calls


def first_and_rest(make: Callable[[], Callable[[], object]], device: str = "cpu", *,
                   repeat: int = 7, warmup: int = 0) -> tuple[float, Timing]:
    """Time the first call of a fresh function apart from the calls that follow.

    Parameters
    ----------
    make : callable
        ``make() -> fn`` builds what is timed (fresh tensors, a fresh compiled function), so
        the first call pays for whatever is done lazily.
    device : str
    repeat : int
    warmup : int
        Untimed calls between the first and the timed ones. A function compiled by
        ``torch.compile`` is still slow for a few calls after its first (on an H100: 0.45,
        0.17, 0.27 ms, then 0.13 ms); ``warmup=3`` times its steady state.

    Returns
    -------
    first_seconds : float
    rest : Timing
        The ``repeat`` calls after the first and the ``warmup`` ones.
    """
    sync = device_sync(device)
    fn = make()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - start
    return first, measure(fn, repeat=repeat, warmup=warmup, sync=sync)
