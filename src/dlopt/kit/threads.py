"""Run small torch computations on one CPU thread.

The experiments of the course multiply matrices of a few hundred rows. Spread over several
threads, such small operations spend more time waiting for each other than computing, and on a
machine whose cores are busy with other work they become many times slower. Inside
:func:`single_threaded` torch uses one intra-op thread; the previous setting is restored on
exit, so nothing changes for the caller's own code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["single_threaded"]


@contextmanager
def single_threaded() -> Iterator[None]:
    """Context manager: ``torch.set_num_threads(1)`` inside, the previous count restored after.

    Also a decorator: ``@single_threaded()``.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with single_threaded():
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
