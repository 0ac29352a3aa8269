"""Lesson 10: model compression. The labs, plots and explorer of ``solutions/10_compression``.

Every experiment takes the learner's own functions (``magnitude_prune_mask``,
``structured_prune_mask``, ``quant_params``, ``fake_quantize``, ``distillation_loss``) as
arguments; nothing here prunes, quantizes or distills by itself.

Modules
-------
:mod:`~dlopt.lessons.l10_compression.digits_mlp`
    The small digits MLPs of the lesson: building, training (with a hook after every step),
    accuracy, and trying a learner's function before an experiment relies on it.
:mod:`~dlopt.lessons.l10_compression.pruning_lab`
    Accuracy against sparsity (one-shot and fine-tuned, unstructured and structured), pruned
    weights regrowing when the mask is applied once, dense against CSR storage and matmul time,
    and on CUDA 2:4 semi-structured sparsity and an int8 matmul against float16.
:mod:`~dlopt.lessons.l10_compression.quant_lab`
    Quantization error against bits (per tensor or per channel, affine or symmetric) with the
    ``s / sqrt(12)`` prediction, post-training quantization of the MLP's weights, and
    quantization-aware training through the learner's ``fake_quantize``.
:mod:`~dlopt.lessons.l10_compression.distill_lab`
    A teacher, and small students trained on few labels with cross-entropy alone or distilled
    on unlabelled inputs with the learner's ``distillation_loss`` (with and without ``T**2``).
:mod:`~dlopt.lessons.l10_compression.compression_plots`
    The figures of those experiments (each takes an ``ax`` and a result), and
    :class:`~dlopt.lessons.l10_compression.compression_plots.QuantizationExplorer`.
"""
