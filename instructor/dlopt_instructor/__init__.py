"""Instructor-only material of the course: trusted references and named mistakes for checks.

Students do not install this package: a check cell of a solution notebook imports what it
needs from here, and the release replaces those cells with baked data. Every reference is
built on torch (its functions, autograd, its optimizers and schedulers), never on a formula
written again here; every mistake is torch changed in one visible place.

Modules
-------
:mod:`~dlopt_instructor.oracles`
    References from torch functions: values, derivatives, Jacobian-vector products.
:mod:`~dlopt_instructor.mistakes`
    Helpers for writing the classic mistakes of a check.
:mod:`~dlopt_instructor.backprop`, :mod:`~dlopt_instructor.init`,
:mod:`~dlopt_instructor.preprocessing`
    Lesson 02: losses and backpropagation, initialization, one-hot targets.
:mod:`~dlopt_instructor.clipping`
    Lesson 03: gradient clipping.
:mod:`~dlopt_instructor.rule_variants`, :mod:`~dlopt_instructor.schedules`
    Lesson 04: variants of torch's update rules; torch's schedulers, stepped.
:mod:`~dlopt_instructor.batch_norm`, :mod:`~dlopt_instructor.layer_norm`
    Lesson 06: normalization references, scenario caches, named mistakes.
:mod:`~dlopt_instructor.torch_variants`, :mod:`~dlopt_instructor.residual`
    Lesson 08: torch's components and broken variants of them (``function_variant`` is
    built on :func:`dlopt.kit.torch_bridge.autograd_function`).
:mod:`~dlopt_instructor.timers`, :mod:`~dlopt_instructor.amp`
    Lesson 09: the timer's ground truth, the loss-scale reference.
:mod:`~dlopt_instructor.compression`
    Lesson 10: pruning, quantization and distillation references.
:mod:`~dlopt_instructor.distributed`
    Lesson 11: the ring all-reduce and its time, DistributedSampler, data-parallel and
    accumulated gradients through autograd, ZeRO's memory measured on torch's tensors.
"""

__all__: list[str] = []
