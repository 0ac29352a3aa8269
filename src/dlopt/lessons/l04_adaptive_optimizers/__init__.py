"""Lesson 04 (adaptive optimizers): the labs and explorer of ``solutions/04_adaptive_optimizers``.

Every experiment takes the learner's update rules (``adagrad_step``, ``adam_step``, ...) and
schedules (``cosine_lr``, ...); nothing here implements an optimizer or a schedule.

Modules
-------
:mod:`~dlopt.lessons.l04_adaptive_optimizers.adaptive_lab`
    Adam's bias correction, Adagrad's sum against RMSprop's average, L2 inside Adam against
    AdamW, and a schedule in training on the digits.
:mod:`~dlopt.lessons.l04_adaptive_optimizers.schedule_explorer`
    The schedule explorer: a schedule's curve and what it does to a run with noisy gradients.
:mod:`~dlopt.lessons.l04_adaptive_optimizers.torch_schedulers`
    torch's recursive schedulers (chained, or changed from outside) next to the learner's
    closed forms.
"""

__all__: list[str] = []
