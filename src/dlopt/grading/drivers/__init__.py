"""Drivers: call a learner's function (and the reference, and every named mistake) the way a
check needs it, and report plain data that the grader can compare.

A check names its driver (``Exercise(..., driver=run_update_rule)``); the same driver runs in
the notebook and in the grader, so it must live here, in the package the grader imports.

Modules
-------
:mod:`~dlopt.grading.drivers.update_rule`
    Update rules (lessons 03, 04, 05): a whole trajectory per case.
:mod:`~dlopt.grading.drivers.init`
    Initializers (lesson 02): a seed turned into a generator; the spread of a large draw.
:mod:`~dlopt.grading.drivers.preprocessing`
    ``one_hot`` (lesson 02): the values and the kind of dtype.
:mod:`~dlopt.grading.drivers.batch_norm`
    ``batchnorm_forward`` (lesson 06): training batches, then one evaluation call.
:mod:`~dlopt.grading.drivers.layer_norm`
    ``layernorm_forward`` (lesson 06): the batch, then every example alone.
:mod:`~dlopt.grading.drivers.norm_cache`
    The cache both normalization layers return, and the checks of a learner's
    ``(out, cache)``.
:mod:`~dlopt.grading.drivers.dropout`
    Dropout (lesson 07): random masks compared by statistics, or reproduced exactly.
:mod:`~dlopt.grading.drivers.torch_modules`
    Lesson 08's torch classes: Functions, Modules, Optimizers, reported as plain data.
:mod:`~dlopt.grading.drivers.residual`
    ``ResidualBlock`` (lesson 08): one forward and backward pass.
:mod:`~dlopt.grading.drivers.timer`
    A simulated GPU with a fake clock, for lesson 09's timer.
:mod:`~dlopt.grading.drivers.loss_scale`
    ``update_loss_scale`` (lesson 09): a rule over a sequence of steps.
:mod:`~dlopt.grading.drivers.pruning`
    ``magnitude_prune_mask`` with tied magnitudes (lesson 10): how many entries were pruned,
    and their magnitudes, which every correct tie-break shares.
:mod:`~dlopt.grading.drivers.allreduce`
    ``ring_allreduce`` (lesson 11): every rank's final buffer and count of elements sent, as
    two arrays, whatever containers the learner returned.
"""

__all__: list[str] = []
