"""Helpers several lessons share; none of them is graded, and none answers an exercise.

Each module says which lessons use it.

Modules
-------
:mod:`~dlopt.kit.data`
    The digits, split and standardized; label noise.
:mod:`~dlopt.kit.env`
    What the learner's environment has: versions, devices, widgets.
:mod:`~dlopt.kit.figure_widget`
    The base of every explorer: controls, one reused figure shown as a PNG, one renderer.
:mod:`~dlopt.kit.learner`
    Call a learner's functions so that an unfinished exercise becomes a message.
:mod:`~dlopt.kit.objectives`
    Test functions with analytic gradients, for NumPy arrays and torch tensors.
:mod:`~dlopt.kit.plotting`
    The course's palette, figures without pyplot, and plots shared by several lessons.
:mod:`~dlopt.kit.surfaces`
    Two-dimensional landscapes (function, gradient, view) for the optimizer explorers.
:mod:`~dlopt.kit.threads`
    How many CPU threads torch uses inside a block.
:mod:`~dlopt.kit.timing`
    Warm-up, repeats, the median and the spread.
:mod:`~dlopt.kit.torch_bridge`
    NumPy code as torch autograd Functions, and torch optimizers as update rules.
:mod:`~dlopt.kit.torch_objectives`
    Lesson 08's name for the test functions, which take torch tensors.
:mod:`~dlopt.kit.trajectory`
    The one loop that runs an update rule.
"""

__all__: list[str] = []
