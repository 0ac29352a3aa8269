"""Lesson 06 (batch normalization): the labs and explorer of ``solutions/06_batch_norm``.

Every experiment takes the learner's ``batchnorm_forward`` and ``batchnorm_backward`` (and
``layernorm_forward``, ``layernorm_backward``); nothing here normalizes by itself.

Modules
-------
:mod:`~dlopt.lessons.l06_batch_norm.bn_torch`
    The learner's NumPy batch norm as a torch operation with autograd.
:mod:`~dlopt.lessons.l06_batch_norm.bn_lab`
    Training with and without batch norm over a grid of learning rates and scales, the
    gradient check, inference with running statistics, and memory.
:mod:`~dlopt.lessons.l06_batch_norm.bn_widgets`
    The activation explorer: each hidden layer's values during training, with and without
    batch norm.
:mod:`~dlopt.lessons.l06_batch_norm.layer_norm_lab`
    Layer norm beside batch norm: its gradient check, and outputs that do not depend on the
    batch.
"""

__all__: list[str] = []
