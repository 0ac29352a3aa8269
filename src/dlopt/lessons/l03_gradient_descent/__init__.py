"""Lesson 03 (gradient descent): the labs and explorer of ``solutions/03_gradient_descent``.

Every experiment takes the learner's gradients and update rules
(``w_next, state = rule(w, dw, state, **hyperparameters)``); the steps are taken by
:func:`dlopt.kit.trajectory.follow_rule`.

Modules
-------
:mod:`~dlopt.lessons.l03_gradient_descent.minibatch`
    Full-batch, stochastic and mini-batch descent on a least-squares problem: training,
    gradient noise against the batch size, time per step.
:mod:`~dlopt.lessons.l03_gradient_descent.explorer`
    The convergence explorer: update rules raced on the 2-D surfaces of
    :mod:`dlopt.kit.surfaces` (lesson 04 uses it too).
:mod:`~dlopt.lessons.l03_gradient_descent.clipping_lab`
    Exploding gradients on Rosenbrock's wall, with and without the learner's
    ``clip_grad_norm``.
"""

__all__: list[str] = []
