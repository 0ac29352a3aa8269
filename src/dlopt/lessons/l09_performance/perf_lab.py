"""Lesson 09: throughput experiments, NumPy vs torch vs GPU, batch size, data loading.

- :func:`speedup_table` times the same operation in NumPy, in torch on the CPU and, when
  given one, in torch on a GPU, over a range of sizes; :func:`plot_speedup` draws the times.
- :func:`batch_size_sweep` trains the same small digits classifier with several batch sizes
  and records the throughput (examples per second) and the training loss against the number
  of examples seen; :func:`plot_batch_sweep` draws both.
- :class:`SlowDigits` is a dataset whose items take a fixed time to produce (decoding,
  augmentation, reading a file), and :func:`loader_throughput` times a ``DataLoader`` over it
  with a given number of worker processes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from dlopt.kit.data import DigitsSplit, load_digits_split
from dlopt.kit.timing import measure
from dlopt.lessons.l09_performance.gpu_timing import cpu_threads, device_sync, measure_device

__all__ = [
    "BatchRun",
    "SlowDigits",
    "SpeedupTable",
    "batch_size_sweep",
    "loader_throughput",
    "plot_batch_sweep",
    "plot_speedup",
    "speedup_table",
]


# ---------------------------------------------------------------------------------------------
# NumPy vs torch vs GPU
# ---------------------------------------------------------------------------------------------
@dataclass
class SpeedupTable:
    """Seconds per operation by backend and size.

    Attributes
    ----------
    op : str
        ``"elementwise"`` (``a * b + c`` on vectors of ``size`` entries) or ``"matmul"``
        (``size x size`` matrices).
    sizes : ndarray of int
    seconds : dict of str to ndarray
        ``"numpy"``, ``"torch cpu"`` and, when measured, ``"torch cuda"`` (or mps): the median
        seconds per operation at each size.
    """

    op: str
    sizes: np.ndarray
    seconds: dict[str, np.ndarray] = field(default_factory=dict)

    def crossover(self, slow: str = "numpy", fast: str = "torch cpu") -> int | None:
        """The smallest size from which ``fast`` stays faster than ``slow`` (None: never)."""
        wins = self.seconds[fast] < self.seconds[slow]
        for i in range(len(self.sizes)):
            if wins[i:].all():
                return int(self.sizes[i])
        return None


def _number_for(seconds_guess: float) -> int:
    return int(min(1000, max(1, 2e-3 / max(seconds_guess, 1e-9))))


def speedup_table(op: str = "elementwise", sizes: Sequence[int] = (), *, device: str = "cpu",
                  repeat: int = 5, seed: int = 0, threads: int | None = None,
                  timer: Callable | None = None) -> SpeedupTable:
    """Time ``op`` in NumPy, torch on the CPU and torch on ``device`` (if not the CPU).

    Parameters
    ----------
    op : str
        ``"elementwise"``: ``a * b + c`` for float32 vectors of ``size`` entries (three
        operations, memory-bound). ``"matmul"``: ``a @ b`` for float32 ``size x size``
        matrices (compute-bound for large sizes).
    sizes : sequence of int
        Default: 2**4 ... 2**22 entries for elementwise, 8 ... 1024 for matmul.
    device : str
        ``"cuda"`` or ``"mps"`` adds a column ``"torch <device>"`` (with synchronize).
    repeat : int
        Timed runs per entry; each run repeats the operation enough times to last about
        2 ms, so that tiny operations are measurable.
    seed : int
    threads : int, optional
        CPU threads during the measurement, for torch and for NumPy's BLAS alike (restored
        afterwards). Default: leave both as they are.
    timer : callable, optional
        ``timer(fn, clock, sync, warmup=..., repeat=...) -> {"median": seconds, ...}``, the
        interface of lesson 09's ``time_with_warmup``, called with ``time.perf_counter`` and
        the device's synchronize. Default:
        :func:`dlopt.lessons.l09_performance.gpu_timing.measure_device` with the host clock.

    Returns
    -------
    SpeedupTable
    """
    if op not in ("elementwise", "matmul"):
        raise ValueError(f"op must be 'elementwise' or 'matmul', got {op!r}")
    if not sizes:
        sizes = [2**k for k in range(4, 23, 3)] if op == "elementwise" else [8, 32, 128, 512]
    rng = np.random.default_rng(seed)
    backends = ["numpy", "torch cpu"] + ([f"torch {device}"] if device != "cpu" else [])
    table = SpeedupTable(op, np.asarray(sizes, dtype=np.int64),
                         {b: np.zeros(len(sizes)) for b in backends})
    blas = (threadpool_limits(limits=threads, user_api="blas") if threads is not None
            else contextlib.nullcontext())
    with cpu_threads(threads), blas:
        for i, size in enumerate(sizes):
            shape = (size,) if op == "elementwise" else (size, size)
            arrays = [rng.standard_normal(shape, dtype=np.float32) for _ in range(3)]
            for backend in backends:
                if backend == "numpy":
                    a, b, c = arrays
                else:
                    where = "cpu" if backend == "torch cpu" else device
                    a, b, c = (torch.from_numpy(x).to(where) for x in arrays)
                if op == "elementwise":
                    def fn(a=a, b=b, c=c):
                        return a * b + c
                else:
                    def fn(a=a, b=b):
                        return a @ b
                where = "cpu" if backend in ("numpy", "torch cpu") else device
                guess = measure(fn, repeat=1, warmup=1, sync=device_sync(where)).median
                number = _number_for(guess)
                if timer is None:
                    seconds = measure_device(fn, where, repeat=repeat, warmup=1, number=number,
                                             events=False).median
                else:
                    def calls(fn=fn, number=number):
                        for _ in range(number):
                            fn()

                    result = timer(calls, time.perf_counter, device_sync(where), warmup=1,
                                   repeat=repeat)
                    seconds = float(result["median"]) / number
                table.seconds[backend][i] = seconds
    return table


def plot_speedup(ax, table: SpeedupTable, *, title: str = "") -> None:
    """Seconds per operation against size, one line per backend, on log-log axes."""
    for k, (backend, seconds) in enumerate(table.seconds.items()):
        ax.loglog(table.sizes, seconds * 1e6, "o-", color=f"C{k}", ms=3, label=backend)
    unit = "entries per vector" if table.op == "elementwise" else "n (n x n matrices)"
    ax.set_xlabel(unit)
    ax.set_ylabel("µs per operation")
    ax.set_title(title or ("a * b + c" if table.op == "elementwise" else "a @ b"))
    ax.legend(fontsize=8)


# ---------------------------------------------------------------------------------------------
# Batch size: throughput against convergence
# ---------------------------------------------------------------------------------------------
@dataclass
class BatchRun:
    """One batch size of :func:`batch_size_sweep`.

    Attributes
    ----------
    batch_size : int
    examples_per_second : float
        Training examples processed per second (forward, backward, step), evaluation excluded.
    examples_seen : ndarray
        Where the loss was evaluated: 0, then after every ``eval_every`` examples.
    train_loss : ndarray
        Cross-entropy on the whole training set at those points.
    """

    batch_size: int
    examples_per_second: float
    examples_seen: np.ndarray
    train_loss: np.ndarray


def batch_size_sweep(batch_sizes: Sequence[int] = (8, 32, 128, 512), *, examples: int = 8192,
                     lr: float = 0.05, hidden: int = 64, seed: int = 0, device: str = "cpu",
                     eval_every: int = 512, data: DigitsSplit | None = None,
                     threads: int | None = 1) -> list[BatchRun]:
    """Train ``64 -> hidden -> 10`` (ReLU) with SGD on the digits for ``examples`` examples.

    Every batch size starts from the same weights, uses the same ``lr`` and sees the same
    number of examples (so larger batches take fewer steps).

    Parameters
    ----------
    batch_sizes : sequence of int
    examples : int
        Training examples per run (mini-batches drawn from reshuffled passes).
    lr : float
        SGD learning rate, the same for every batch size.
    hidden, seed, device
    eval_every : int
        Examples between two evaluations of the full training loss.
    data : DigitsSplit, optional
    threads : int or None
        Torch's CPU threads during the runs (one by default: small operations); None leaves
        the setting alone.

    Returns
    -------
    list of BatchRun
    """
    data = data if data is not None else load_digits_split(seed=0)
    sync = device_sync(device)
    runs = []
    with cpu_threads(threads), torch.random.fork_rng(devices=[]), torch.enable_grad():
        X = torch.tensor(data.X_train, dtype=torch.float32, device=device)
        y = torch.tensor(data.y_train, device=device)
        for batch_size in batch_sizes:
            torch.manual_seed(seed)
            model = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(),
                                        torch.nn.Linear(hidden, 10)).to(device)
            opt = torch.optim.SGD(model.parameters(), lr=lr)
            rng = np.random.default_rng(seed)
            order, pos = rng.permutation(len(X)), 0
            seen, checkpoints, losses, busy = 0, [], [], 0.0
            next_eval = 0
            while True:
                if seen >= next_eval:
                    with torch.no_grad():
                        losses.append(float(torch.nn.functional.cross_entropy(model(X), y)))
                    checkpoints.append(seen)
                    next_eval += eval_every
                if seen >= examples:
                    break
                if pos + batch_size > len(X):
                    order, pos = rng.permutation(len(X)), 0
                idx = torch.as_tensor(order[pos:pos + batch_size], device=device)
                pos += batch_size
                start = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
                opt.step()
                sync()
                busy += time.perf_counter() - start
                seen += batch_size
            runs.append(BatchRun(int(batch_size), seen / busy, np.array(checkpoints),
                                 np.array(losses)))
    return runs


def plot_batch_sweep(ax_throughput, ax_loss, runs: Sequence[BatchRun]) -> None:
    """Examples per second against batch size; training loss against examples seen."""
    sizes = [r.batch_size for r in runs]
    ax_throughput.loglog(sizes, [r.examples_per_second for r in runs], "o-", color="k")
    ax_throughput.set_xlabel("batch size")
    ax_throughput.set_ylabel("examples / s")
    ax_throughput.set_title("throughput")
    for k, r in enumerate(runs):
        ax_loss.semilogy(r.examples_seen, r.train_loss, color=f"C{k}",
                         label=f"batch {r.batch_size}")
    ax_loss.set_xlabel("training examples seen")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("convergence per example")
    ax_loss.legend(fontsize=8)


# ---------------------------------------------------------------------------------------------
# Data loading
# ---------------------------------------------------------------------------------------------
class SlowDigits(torch.utils.data.Dataset):
    """The digits' training images, each taking ``work_seconds`` to produce.

    The wait stands for decoding a JPEG or reading a file: work done per item, in Python,
    outside the model. ``time.sleep`` is used so that the cost is the same on a busy machine.
    """

    def __init__(self, n_items: int = 256, work_seconds: float = 1e-3,
                 data: DigitsSplit | None = None):
        data = data if data is not None else load_digits_split(seed=0)
        self.X = torch.tensor(data.X_train[:n_items], dtype=torch.float32)
        self.y = torch.tensor(data.y_train[:n_items])
        self.work_seconds = float(work_seconds)

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i):
        time.sleep(self.work_seconds)
        return self.X[i], self.y[i]


def loader_throughput(num_workers: int = 0, *, n_items: int = 256, work_seconds: float = 1e-3,
                      batch_size: int = 32, pin_memory: bool = False,
                      data: DigitsSplit | None = None) -> dict:
    """One pass of a ``DataLoader`` over :class:`SlowDigits`, timed.

    Parameters
    ----------
    num_workers : int
        Worker processes (0: the items are produced in this process, one after the other).
    n_items, work_seconds, batch_size
    pin_memory : bool
        Copy batches to page-locked memory (only meaningful with CUDA; leave False without).
    data : DigitsSplit, optional

    Returns
    -------
    dict
        ``"seconds"`` for the pass (worker start-up included), ``"examples_per_second"``,
        ``"first_batch_seconds"`` (start-up latency) and ``"batches"``.
    """
    dataset = SlowDigits(n_items, work_seconds, data)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size,
                                         num_workers=num_workers, pin_memory=pin_memory)
    start = time.perf_counter()
    first, batches = None, 0
    for _ in loader:
        batches += 1
        if first is None:
            first = time.perf_counter() - start
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "examples_per_second": n_items / seconds,
            "first_batch_seconds": first, "batches": batches}
