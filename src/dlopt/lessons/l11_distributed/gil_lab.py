"""Lesson 11: threads against processes, timed, on a pure-Python loop and on a torch step.

CPython runs the bytecode of one thread at a time: a thread must hold the global interpreter
lock (GIL) to execute Python code. C code may release it while it works without touching Python
objects, and NumPy and torch do so inside their kernels. So:

- a **pure-Python loop** in two threads takes about as long as the two loops one after the
  other: the lock lets one thread run at a time;
- a **torch training step** (matrix products, one intra-op thread per worker) spends most of
  its time inside kernels that release the lock, so two threads can overlap; the Python part of
  each step (building the graph, dispatching each operation) still takes turns;
- **processes** each have their own interpreter and their own lock: two processes can run two
  pure-Python loops at once, on two free cores.

:func:`threads_vs_processes` runs each workload in 1 and 2 threads and in 1 and 2 processes
(each worker does the same amount of work) and reports the wall-clock times and the work done
per second relative to one worker. Nothing here asserts a speed-up: on a shared machine the
other cores may be busy, and the figure shows what was measured. Processes are started by a
``forkserver`` (``spawn`` where there is none): a process forked straight from a kernel whose
threads have run BLAS kernels can inherit a lock that nobody releases and hang at its first
matrix product (seen here about once in six runs, and with Colab's libraries); the fork
server has imported torch but never run a kernel. The workloads are this module's functions,
so the server can import them.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dlopt.kit.threads import cpu_threads
from dlopt.lessons.l11_distributed.launch import forking

__all__ = ["MODES", "WORKLOADS", "GilResult", "python_loop", "threads_vs_processes",
           "time_workers", "torch_steps"]

MODES = ("threads", "processes")
WORKLOADS = ("pure-Python loop", "torch training step")


def python_loop(iterations: int) -> int:
    """Pure Python: a loop of additions and multiplications on Python ints."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def torch_steps(steps: int, width: int = 384, batch: int = 256) -> float:
    """``steps`` SGD steps of a two-layer MLP on a fixed random batch (float32, this thread)."""
    gen = torch.Generator().manual_seed(0)
    w1 = torch.randn(width, width, generator=gen, requires_grad=True)
    w2 = torch.randn(width, width, generator=gen, requires_grad=True)
    x = torch.randn(batch, width, generator=gen)
    loss = torch.zeros(())
    for _ in range(steps):
        loss = (torch.relu(x @ w1) @ w2).square().mean()
        loss.backward()
        with torch.no_grad():
            for w in (w1, w2):
                w -= 1e-6 * w.grad
                w.grad = None
    return float(loss.detach())


def _wait_until_gone(threads: list[threading.Thread], timeout: float = 2.0) -> None:
    """Wait until the threads' OS threads have exited, not only their Python code.

    ``Thread.join`` returns when the thread's Python code is done; the OS thread then still runs
    its thread-local destructors (MKL frees its per-thread buffers there, under a lock). A fork
    in that window gives the child a lock that nobody will release: its first matrix product
    hangs. On Linux the thread is gone when /proc/self/task/<native_id> is; elsewhere a short
    pause does.
    """
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        time.sleep(0.05)
        return
    deadline = time.monotonic() + timeout
    ids = [t.native_id for t in threads if t.native_id is not None]
    while any((tasks / str(i)).exists() for i in ids) and time.monotonic() < deadline:
        time.sleep(0.001)


def _child(job: Callable[[], object]) -> None:
    torch.set_num_threads(1)  # one intra-op thread per worker, before any kernel runs
    job()


def _process_context():
    """A fork server that has imported torch and this module (see the module's docstring)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", __name__])
    return context


def time_workers(job: Callable[[], object], workers: int, mode: str, *,
                 timeout: float = 60.0) -> float:
    """Seconds of wall clock for ``workers`` threads or processes each running ``job()``.

    Threads run in this process with one torch thread (the setting is restored after);
    processes start from the fork server (see the module's docstring; ``job`` must be
    picklable, e.g. a ``functools.partial`` of this module's functions) and set one torch
    thread first. The clock includes starting and joining them.
    """
    if mode == "threads":
        with cpu_threads(1):
            threads = [threading.Thread(target=job) for _ in range(workers)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout)
            seconds = time.perf_counter() - start
        _wait_until_gone(threads)
        return seconds
    if mode != "processes":
        raise ValueError(f"mode must be 'threads' or 'processes', got {mode!r}")
    context = _process_context()
    processes = [context.Process(target=_child, args=(job,), daemon=True)
                 for _ in range(workers)]
    start = time.perf_counter()
    with forking():
        for p in processes:
            p.start()
    for p in processes:
        p.join(timeout)
    seconds = time.perf_counter() - start
    for p in processes:
        if p.is_alive():
            p.kill()
            p.join(1.0)
            raise RuntimeError(f"a worker process did not finish within {timeout} s")
        if p.exitcode != 0:
            raise RuntimeError(f"a worker process exited with code {p.exitcode}")
    return seconds


@dataclass
class GilResult:
    """Median wall-clock seconds by (workload, mode, workers), each worker doing one unit.

    ``speedup[(workload, mode, workers)]`` is the work done per second relative to one
    worker of the same mode: ``workers * t(1) / t(workers)`` (2 means two units of work in the
    time of one; 1 means they took turns).
    """

    seconds: dict[tuple[str, str, int], float] = field(default_factory=dict)
    runs: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)
    cpu_count: int = 1
    load_average: float | None = None
    switch_interval: float = 0.005

    def machine(self) -> str:
        """One line on where this was measured: cores, load, the interpreter's switch interval."""
        load = ("" if self.load_average is None
                else f", load average {self.load_average:.2f} (1 min) before measuring")
        return (f"{self.cpu_count} CPU cores usable by this process{load}; threads take turns "
                f"at the interpreter lock every {self.switch_interval * 1e3:g} ms "
                "(sys.getswitchinterval())")

    def speedup(self, workload: str, mode: str, workers: int) -> float:
        return workers * self.seconds[(workload, mode, 1)] / self.seconds[(workload, mode, workers)]


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_vs_processes(*, python_iterations: int = 300_000, steps: int = 4,
                         workers: tuple[int, ...] = (1, 2), repeat: int = 3) -> GilResult:
    """Time both workloads in 1 and 2 threads and 1 and 2 processes (median of ``repeat``).

    Parameters
    ----------
    python_iterations : int
        Iterations of :func:`python_loop` per worker (about 0.05 s on one core).
    steps : int
        Steps of :func:`torch_steps` per worker (about 0.1 s on one core).
    """
    jobs = {WORKLOADS[0]: functools.partial(python_loop, python_iterations),
            WORKLOADS[1]: functools.partial(torch_steps, steps)}
    time_workers(functools.partial(python_loop, 1), 1, "processes")  # starts the fork server
    result = GilResult(cpu_count=_usable_cpus(),
                       load_average=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                       switch_interval=sys.getswitchinterval())
    for workload, job in jobs.items():
        with cpu_threads(1):
            job()  # warm-up: first-call costs stay out of the timings
        for _ in range(repeat):
            for mode in MODES:
                for n in workers:
                    key = (workload, mode, n)
                    result.runs.setdefault(key, []).append(time_workers(job, n, mode))
    result.seconds = {key: statistics.median(runs) for key, runs in result.runs.items()}
    return result
