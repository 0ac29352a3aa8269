"""The lessons' own code: each lesson's labs, plots and explorers, one package per lesson.

A lesson's notebook imports its package (``from dlopt.lessons.l03_gradient_descent import
explorer``); what several lessons share is in :mod:`dlopt.kit`, and what checks a learner's
answers is in :mod:`dlopt.grading`. Nothing here is graded, and nothing here answers an
exercise: every experiment takes the learner's functions as arguments.

Packages
--------
:mod:`~dlopt.lessons.l01_activations`
    Activations and their derivatives: gradient checks, vanishing gradients, dead ReLUs.
:mod:`~dlopt.lessons.l02_losses_backprop`
    Losses and backpropagation by hand: a digits MLP, weight initialization.
:mod:`~dlopt.lessons.l03_gradient_descent`
    Gradient descent: mini-batches, the convergence explorer, gradient clipping.
:mod:`~dlopt.lessons.l04_adaptive_optimizers`
    Adagrad, RMSprop, Adam and AdamW; learning-rate schedules.
:mod:`~dlopt.lessons.l05_regularization`
    L2, weight decay, L1 and sparsity, early stopping, choosing lambda.
:mod:`~dlopt.lessons.l06_batch_norm`
    Batch norm in training, inference and memory; layer norm beside it.
:mod:`~dlopt.lessons.l07_dropout`
    Inverted dropout, the ensemble view, overfitting.
:mod:`~dlopt.lessons.l08_pytorch_from_numpy`
    The same algorithms as torch Functions, Modules and Optimizers.
:mod:`~dlopt.lessons.l09_performance`
    Timing, mixed precision, the roofline, throughput.
:mod:`~dlopt.lessons.l10_compression`
    Pruning, quantization and distillation.
:mod:`~dlopt.lessons.l11_distributed`
    Threads and processes, the ring all-reduce, data parallelism, DDP in gloo processes, ZeRO.
"""

__all__: list[str] = []
