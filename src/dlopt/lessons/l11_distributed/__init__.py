"""Lesson 11: parallel and distributed training. The labs and plots of ``solutions/11_distributed``.

Every experiment that uses an exercise takes the learner's own functions (``ring_allreduce``,
``allreduce_time``, ``shard_indices``, ``data_parallel_gradient``, ``accumulated_gradient``,
``zero_memory_per_rank``) as arguments; nothing here all-reduces, shards or counts memory by
itself.

Modules
-------
:mod:`~dlopt.lessons.l11_distributed.losses`
    The mean-loss gradients (softmax regression, least squares) that the data-parallel
    exercises combine: the ``grad_fn`` of their checks and experiments.
:mod:`~dlopt.lessons.l11_distributed.gil_lab`
    Threads against processes, timed on a pure-Python loop and a torch training step.
:mod:`~dlopt.lessons.l11_distributed.launch`
    k forked processes in a gloo process group on the loopback interface, with deadlines:
    a stuck or failing child never hangs the notebook.
:mod:`~dlopt.lessons.l11_distributed.ddp_lab`
    DistributedDataParallel in k processes against one process on the combined batch, and
    the variants that break the equality.
:mod:`~dlopt.lessons.l11_distributed.parallel_lab`
    The learner's functions at work in one process: data-parallel and accumulated descent
    against full-batch descent, DistributedSampler's padding, all-reduce time by message
    size, ZeRO's memory per rank.
:mod:`~dlopt.lessons.l11_distributed.distributed_plots`
    The figures of those experiments (each takes an ``ax`` and a result).
"""
