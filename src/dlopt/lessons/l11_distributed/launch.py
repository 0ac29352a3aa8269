"""Lesson 11: start k processes in a gloo process group on this machine, and never hang.

:func:`launch` runs ``fn(rank, world_size, *args)`` in ``world_size`` processes that have
joined one ``torch.distributed`` process group (backend gloo, over the loopback interface,
127.0.0.1 and a free port), and returns what each rank's ``fn`` returned. What a notebook
needs of it:

- the processes are **forked** (``torch.multiprocessing.start_processes(...,
  start_method="fork")``): ``spawn`` starts fresh interpreters that cannot import a function
  defined in a notebook, and would import torch again in each;
- ``torch._dynamo`` is imported in the parent first: the first ``DistributedDataParallel``
  construction imports it otherwise, in every child, a few seconds each;
- each child uses **one** torch thread (k processes share the cores);
- ``init_process_group`` gets a short ``timeout``, and every join has a deadline: a child that
  fails, or waits for a peer that never comes, ends the run with :class:`GlooUnavailable`
  (its message says why) instead of hanging the notebook; children still alive are killed;
- results come back through files in a temporary folder (one pickle per rank, written by our
  own children), not a queue that a dead child could leave locked.

Where gloo cannot start (no loopback interface, as in the grader's sandbox, which has no
network; no fork on Windows; a build of torch without distributed support), :func:`launch`
raises :class:`GlooUnavailable` at once, and an experiment prints its message and skips.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import pickle
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

__all__ = ["GlooUnavailable", "forking", "free_port", "gloo_problem", "launch"]


class GlooUnavailable(RuntimeError):
    """A gloo process group could not be started, or did not finish in time, here."""


@contextlib.contextmanager
def forking() -> Iterator[None]:
    """Fork inside this block without Python 3.12's warning that the process has threads.

    A Jupyter kernel always has threads (its heartbeat, its output streams), so every fork
    from a notebook would print the DeprecationWarning. The danger it names is real: a lock
    held by another thread at the moment of the fork stays held in the child. The kernel's
    threads hold no lock the children need, and the lesson's own threads are gone before a
    fork (:func:`dlopt.lessons.l11_distributed.gil_lab.time_workers` waits for them).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks",
                                category=DeprecationWarning)
        yield


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gloo_problem() -> str | None:
    """Why gloo processes cannot start here, in one sentence; None when they can try."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        return "this build of torch has no torch.distributed with the gloo backend"
    if "fork" not in multiprocessing.get_all_start_methods():
        return "this platform cannot fork processes (the experiment needs start_method='fork')"
    try:
        free_port()
    except OSError as exc:
        return f"no loopback network interface to connect the processes ({exc})"
    return None


def _worker(rank: int, world_size: int, port: int, fn: Callable, args: tuple, folder: str,
            init_timeout: float) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=init_timeout))
    try:
        result = fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()
    with open(Path(folder) / f"rank{rank}.pkl", "wb") as f:
        pickle.dump(result, f)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "an unknown error"


def _root_cause(context, exc: BaseException) -> str:
    """The first rank's own error, rather than a peer's "connection closed (or reset) by peer"
    from gloo's transport that followed it."""
    causes = []
    for path in context.error_files:
        try:
            with open(path, "rb") as f:
                causes.append(_last_line(str(pickle.load(f))))
        except (OSError, EOFError, pickle.UnpicklingError):
            continue
    own = [c for c in causes if "by peer" not in c and "gloo/transport" not in c]
    return (own or causes or [_last_line(str(exc))])[0]


def launch(fn: Callable, world_size: int, *args, timeout: float = 60.0,
           init_timeout: float = 20.0) -> list:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` gloo processes; their results.

    Parameters
    ----------
    fn : callable
        Runs in each child after ``dist.init_process_group("gloo", ...)``; it may use
        collectives and DistributedDataParallel. Its return value must pickle.
    world_size : int
        Number of processes (ranks 0 .. world_size - 1).
    timeout : float
        Seconds for the whole run; past it the children are killed.
    init_timeout : float
        ``init_process_group``'s timeout (also that of every collective).

    Returns
    -------
    list
        ``fn``'s return value for each rank, in rank order.

    Raises
    ------
    GlooUnavailable
        Where gloo cannot start here, when a child fails (the message is the child's
        exception), or when the run takes longer than ``timeout``.
    """
    from torch.multiprocessing.spawn import ProcessException

    problem = gloo_problem()
    if problem:
        raise GlooUnavailable(problem)
    import torch._dynamo  # noqa: F401  (before forking: DDP would import it in every child)

    with tempfile.TemporaryDirectory(prefix="dlopt-gloo-") as folder:
        with forking():
            context = torch.multiprocessing.start_processes(
                _worker, args=(world_size, free_port(), fn, args, folder, init_timeout),
                nprocs=world_size, join=False, start_method="fork")
        deadline = time.monotonic() + timeout
        try:
            while not context.join(timeout=max(0.0, deadline - time.monotonic()),
                                   grace_period=1.0):
                if time.monotonic() >= deadline:
                    raise GlooUnavailable(f"the {world_size} processes did not finish within "
                                          f"{timeout:g} s")
        except ProcessException as exc:
            raise GlooUnavailable(f"a process failed: {_root_cause(context, exc)}") from None
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
                    process.join(1.0)
        results = []
        for rank in range(world_size):
            path = Path(folder) / f"rank{rank}.pkl"
            if not path.exists():
                raise GlooUnavailable(f"rank {rank} finished without a result")
            with open(path, "rb") as f:
                results.append(pickle.load(f))
    return results
