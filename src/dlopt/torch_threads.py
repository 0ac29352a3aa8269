"""Run small torch computations on one thread.

Torch parallelises even tiny tensor operations over its thread pool. On a shared 2-core
machine (CI, Binder, Colab, a classroom server) the threads fight with other processes, and an
operation on 10^5 elements can take ten times longer than on a single thread. The dropout
checks and experiments therefore run torch on one thread, and put the setting back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["one_torch_thread"]


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Within the block, torch uses one intra-op thread; the previous number is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
