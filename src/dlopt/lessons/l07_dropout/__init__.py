"""Lesson 07 (dropout): the labs, plots and explorer of ``solutions/07_dropout``.

Every experiment takes the learner's ``dropout_forward`` and ``dropout_backward``; nothing here
drops a unit by itself.

Modules
-------
:mod:`~dlopt.lessons.l07_dropout.dropout_lab`
    The expectation of inverted dropout, the learner's dropout inside a torch network, the
    ensemble view, and the overfitting sweep over the drop probability.
:mod:`~dlopt.lessons.l07_dropout.dropout_plots`
    The figures of those experiments, and the overfitting explorer.
"""

__all__: list[str] = []
