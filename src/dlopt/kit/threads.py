"""How many CPU threads torch uses inside a block: one context for the whole course.

Used by lessons 02, 04, 05, 06, 07, 08 and 09, by the grading drivers and by the instructor's
references.

The experiments of the course multiply matrices of a few hundred rows. Spread over several
threads, such small operations spend more time waiting for each other than computing, and on a
machine whose cores are busy with other work they become many times slower. Inside
``cpu_threads(1)`` torch uses one intra-op thread; the previous setting is restored on exit,
so nothing changes for the caller's own code. NumPy's own threads (its BLAS) are not affected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["cpu_threads"]


@contextmanager
def cpu_threads(n: int | None = 1) -> Iterator[None]:
    """Use ``n`` torch CPU threads inside the block; the previous count is restored after it.

    Also a decorator: ``@cpu_threads(1)`` (the decorated function keeps its name).

    Parameters
    ----------
    n : int or None
        Threads for ``torch.set_num_threads``; None leaves the setting alone (the block still
        restores whatever it finds on entry).

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with cpu_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    import torch

    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
