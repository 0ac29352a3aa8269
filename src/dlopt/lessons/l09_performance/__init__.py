"""Lesson 09 (performance): the labs and figures of ``solutions/09_performance``.

The experiments measure torch itself (and the learner's timer, loss-scale rule and byte
counts); every timing comes with its median and spread.

Modules
-------
:mod:`~dlopt.lessons.l09_performance.gpu_timing`
    Timing on any device: synchronize, CUDA events, warm-up, the first call against the rest.
:mod:`~dlopt.lessons.l09_performance.timeline`
    The figure of a simulated device: what the host and the device did, and when.
:mod:`~dlopt.lessons.l09_performance.perf_lab`
    Throughput: NumPy against torch against a GPU, the batch size, data loading workers.
:mod:`~dlopt.lessons.l09_performance.roofline`
    The optimizer step as a memory-bound kernel: bytes moved, bandwidth, the roofline.
:mod:`~dlopt.lessons.l09_performance.amp_lab`
    Mixed precision: rounding, underflow, dynamic loss scaling, autocast.
"""

__all__: list[str] = []
