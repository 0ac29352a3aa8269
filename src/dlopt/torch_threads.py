"""Run small torch computations on one CPU thread.

Torch splits even tiny operations (a batch norm of 8 x 3 numbers) across its intra-op
threads. On a laptop that costs far more than it saves, and on a busy machine a thread that
waits for a core can make one call take milliseconds instead of microseconds. The checks and
experiments of the course work on small arrays, so they run inside :func:`one_thread`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

__all__ = ["one_thread", "single_threaded"]

F = TypeVar("F", bound=Callable)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Set torch's intra-op threads to 1 inside the ``with`` block, then restore them."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def single_threaded(fn: F) -> F:
    """Decorator: run ``fn`` inside :func:`one_thread`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with one_thread():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
