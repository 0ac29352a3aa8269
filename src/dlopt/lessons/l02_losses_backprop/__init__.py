"""Lesson 02 (losses, backpropagation): the labs and explorer of ``solutions/02_losses_backprop``.

Every experiment takes the learner's ``loss_and_grads`` or initializers; nothing here
backpropagates or draws Xavier or He weights by itself.

Modules
-------
:mod:`~dlopt.lessons.l02_losses_backprop.mlp_lab`
    The two-layer digits MLP: training with the learner's gradients, their gradient check,
    accuracy and the training plot.
:mod:`~dlopt.lessons.l02_losses_backprop.init_lab`
    Activation statistics through a deep stack for each initializer, and their plots.
:mod:`~dlopt.lessons.l02_losses_backprop.init_explorer`
    The initialization explorer: activation, initializer, weight scale and depth.
"""

__all__: list[str] = []
