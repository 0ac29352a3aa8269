"""Lesson 01 (activations): the labs, plots and explorers of ``solutions/01_activations``.

Every experiment takes the learner's activations and derivatives (``relu``, ``relu_grad``,
...) and the learner's ``numerical_gradient``; nothing here computes an activation itself.

Modules
-------
:mod:`~dlopt.lessons.l01_activations.gradcheck`
    Derivatives against the learner's central differences, and their error against the step.
:mod:`~dlopt.lessons.l01_activations.vanishing`
    Each layer's gradient norm in a deep stack at initialization, per activation; the weight
    initializers the training experiments of lessons 05 and 07 share.
:mod:`~dlopt.lessons.l01_activations.dead_relu`
    Dead ReLUs: against a bias shift at initialization, and after training at each learning
    rate.
:mod:`~dlopt.lessons.l01_activations.widgets`
    The activation explorer (f and f') and the depth explorer (gradient norms per layer).
"""

__all__: list[str] = []
