"""Lesson 05 (regularization): the labs and explorer of ``solutions/05_regularization``.

Every experiment takes the learner's penalties and update steps (``sgd_l2_step``,
``proximal_l1_step``, ``early_stopping``, ``choose_lambda_by_cv``, ...).

Modules
-------
:mod:`~dlopt.lessons.l05_regularization.weight_decay`
    L2 against weight decay, for SGD and for Adam, on a quadratic bowl.
:mod:`~dlopt.lessons.l05_regularization.sparsity`
    L1 against L2 on a sparse regression problem: exact zeros, shrinkage curves.
:mod:`~dlopt.lessons.l05_regularization.overfit_lab`
    Overfitting on a few mislabelled digits, each penalty's effect, early stopping, and the
    overfitting explorer.
:mod:`~dlopt.lessons.l05_regularization.ridge`
    Ridge regression in closed form (given code), and the sweep that chooses its lambda by
    the learner's cross-validation.
"""

__all__: list[str] = []
