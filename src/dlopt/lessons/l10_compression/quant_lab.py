"""Lesson 10: quantization experiments with a learner's ``quant_params`` and ``fake_quantize``.

- :func:`int_range` gives the integer range of a bit width: signed ``[-2**(b-1), 2**(b-1) - 1]``
  for the symmetric scheme, unsigned ``[0, 2**b - 1]`` for the affine one (torch's defaults for
  weights and activations).
- :func:`quantize_weight` fake-quantizes a weight matrix per tensor or per output channel
  (row) with the learner's functions, and returns the scale of every entry.
- :func:`error_vs_bits` measures the root-mean-square quantization error of a weight matrix
  against the bit width, with the rounding-noise prediction ``s / sqrt(12)`` (the RMS of the
  entries' scales, over sqrt(12)).
- :func:`ptq_accuracy` quantizes every weight matrix of a trained MLP after training
  (post-training quantization, weights only) and measures the test accuracy.
- :func:`qat_run` fine-tunes the MLP with fake-quantized weights in the forward pass
  (quantization-aware training): the forward calls the learner's ``fake_quantize``, the
  backward multiplies the gradient by its ``grad_mask`` (the straight-through estimator), and
  the scales follow the weights (``quant_params`` on the current weights at every step, as an
  observer does).

The interfaces assumed (lesson 10): ``scale, zero_point = quant_params(x, qmin, qmax,
symmetric)`` and ``out, grad_mask = fake_quantize(x, scale, zero_point, qmin, qmax, axis)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dlopt.kit.data import DigitsSplit
from dlopt.kit.learner import LearnerError, function_name
from dlopt.kit.threads import cpu_threads
from dlopt.lessons.l10_compression.digits_mlp import (
    Trained,
    check_learner,
    classifier_accuracy,
    linears,
    tensors,
    train_steps,
)

__all__ = [
    "MODES",
    "ErrorCurve",
    "QATRun",
    "error_vs_bits",
    "int_range",
    "problem_with_quantization",
    "ptq_accuracy",
    "qat_run",
    "quantize_weight",
]

#: The four ways of quantizing a weight matrix: (label, per_channel, symmetric).
MODES = (
    ("per-tensor, symmetric", False, True),
    ("per-tensor, affine", False, False),
    ("per-channel, symmetric", True, True),
    ("per-channel, affine", True, False),
)


def int_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """``(qmin, qmax)``: signed for the symmetric scheme, unsigned for the affine one."""
    if symmetric:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def problem_with_quantization(quant_fn: Callable | None = None,
                              fake_fn: Callable | None = None) -> str | None:
    """Try the learner's quantization functions on a small array; a message, or None."""
    x = np.linspace(-1.0, 2.0, 12).reshape(3, 4)

    def pair(result):
        if not (isinstance(result, tuple) and len(result) == 2):
            return f"must return a pair; got {type(result).__name__}"
        return None

    if quant_fn is not None:
        problem = check_learner(quant_fn, x.copy(), -8, 7, True, check=pair)
        if problem:
            return problem
    if fake_fn is not None:
        def outputs(result):
            if pair(result):
                return pair(result)
            if np.shape(result[0]) != x.shape or np.shape(result[1]) != x.shape:
                return f"must return (out, grad_mask) of x's shape {x.shape}"
            return None

        problem = check_learner(fake_fn, x.copy(), 0.25, 0, -8, 7, check=outputs)
        if problem:
            return problem
        problem = check_learner(fake_fn, x.copy(), np.full(3, 0.25), np.zeros(3, dtype=int),
                                -8, 7, 0, check=outputs)
        if problem:
            return problem
    return None


def quantize_weight(w: np.ndarray, bits: int, quant_fn: Callable, fake_fn: Callable, *,
                    per_channel: bool, symmetric: bool) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
    """Fake-quantize ``w`` (shape (out, in)) with the learner's functions.

    Per channel means one scale and zero point per row (output unit), ``axis=0``.

    Returns
    -------
    wq : ndarray, w's shape
        The dequantized weights (the learner's ``out``).
    scales : ndarray, w's shape
        The scale that applies to each entry.
    grad_mask : ndarray of bool, w's shape
    """
    w = np.asarray(w, dtype=np.float64)
    qmin, qmax = int_range(bits, symmetric)
    if per_channel:
        params = [quant_fn(row.copy(), qmin, qmax, symmetric) for row in w]
        scale = np.array([float(s) for s, _ in params])
        zero_point = np.array([int(round(float(z))) for _, z in params])
        out, grad_mask = fake_fn(w.copy(), scale, zero_point, qmin, qmax, 0)
        scales = np.broadcast_to(scale[:, None], w.shape)
    else:
        scale, zero_point = quant_fn(w.copy(), qmin, qmax, symmetric)
        out, grad_mask = fake_fn(w.copy(), float(scale), int(round(float(zero_point))),
                                 qmin, qmax)
        scales = np.full(w.shape, float(scale))
    out, grad_mask = np.asarray(out, dtype=np.float64), np.asarray(grad_mask)
    if out.shape != w.shape or grad_mask.shape != w.shape:
        raise LearnerError(f"`{function_name(fake_fn)}` returned shapes {out.shape} and "
                           f"{grad_mask.shape}; expected w's shape {w.shape}")
    return out, np.array(scales), grad_mask.astype(bool)


@dataclass
class ErrorCurve:
    """Quantization error of one weight matrix against the bit width, for one mode.

    Attributes
    ----------
    label : str
        One of :data:`MODES`' labels.
    bits : ndarray of int
    rmse : ndarray
        ``sqrt(mean((wq - w)**2))``.
    predicted : ndarray
        ``sqrt(mean(s**2)) / sqrt(12)``, the RMS of rounding errors spread uniformly over one
        step ``s`` (each entry's own scale).
    clipped : ndarray
        Share of the entries clamped to [qmin, qmax] (``grad_mask`` False).
    """

    label: str
    bits: np.ndarray
    rmse: np.ndarray
    predicted: np.ndarray
    clipped: np.ndarray


def error_vs_bits(w: np.ndarray, quant_fn: Callable, fake_fn: Callable,
                  bits: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
                  modes: Sequence[tuple[str, bool, bool]] = MODES) -> dict[str, ErrorCurve]:
    """RMSE of the learner's quantization of ``w`` and the ``s / sqrt(12)`` prediction."""
    w = np.asarray(w, dtype=np.float64)
    curves = {}
    for label, per_channel, symmetric in modes:
        rmse, predicted, clipped = [], [], []
        for b in bits:
            wq, scales, grad_mask = quantize_weight(w, b, quant_fn, fake_fn,
                                                    per_channel=per_channel, symmetric=symmetric)
            rmse.append(float(np.sqrt(np.mean((wq - w) ** 2))))
            predicted.append(float(np.sqrt(np.mean(scales**2) / 12.0)))
            clipped.append(float(np.mean(~grad_mask)))
        curves[label] = ErrorCurve(label, np.array(bits), np.array(rmse), np.array(predicted),
                                   np.array(clipped))
    return curves


def _quantized_copy(trained: Trained, bits: int, quant_fn, fake_fn, *, per_channel: bool,
                    symmetric: bool = True) -> torch.nn.Module:
    model = trained.copy().model
    with torch.no_grad():
        for layer in linears(model):
            w = layer.weight.detach().double().numpy()
            wq, _, _ = quantize_weight(w, bits, quant_fn, fake_fn, per_channel=per_channel,
                                       symmetric=symmetric)
            layer.weight.copy_(torch.from_numpy(wq))
    return model


@cpu_threads(1)
def ptq_accuracy(trained: Trained, digits: DigitsSplit, quant_fn: Callable, fake_fn: Callable,
                 bits: Sequence[int] = (8, 4, 2), *, symmetric: bool = True
                 ) -> dict[str, dict[int, float]]:
    """Test accuracy after quantizing every weight matrix of ``trained`` (biases kept in float).

    Returns
    -------
    dict
        ``{"per-tensor": {bits: accuracy}, "per-channel": {bits: accuracy}}``.
    """
    _, _, X_test, y_test = tensors(digits)
    table: dict[str, dict[int, float]] = {}
    for granularity, per_channel in (("per-tensor", False), ("per-channel", True)):
        table[granularity] = {
            b: classifier_accuracy(_quantized_copy(trained, b, quant_fn, fake_fn,
                                                   per_channel=per_channel, symmetric=symmetric),
                                   X_test, y_test)
            for b in bits}
    return table


class _FakeQuantize(torch.autograd.Function):
    """Forward: the learner's ``fake_quantize``; backward: ``grad * grad_mask`` (STE)."""

    @staticmethod
    def forward(ctx, w, bits, per_channel, symmetric, quant_fn, fake_fn):
        wq, _, grad_mask = quantize_weight(w.detach().double().numpy(), bits, quant_fn,
                                           fake_fn, per_channel=per_channel,
                                           symmetric=symmetric)
        ctx.save_for_backward(torch.from_numpy(grad_mask))
        return torch.from_numpy(wq).to(w.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (grad_mask,) = ctx.saved_tensors
        return grad_output * grad_mask, None, None, None, None, None


@dataclass
class QATRun:
    """Quantization-aware training of the MLP's weights.

    Attributes
    ----------
    bits : int
    per_channel : bool
    steps : ndarray
        0 (post-training quantization, before any QAT step) to the number of steps, every
        ``eval_every`` steps.
    test_accuracy : ndarray
        Accuracy of the network with its weights quantized, at each of ``steps``.
    float_accuracy : float
        The trained network before any quantization.
    """

    bits: int
    per_channel: bool
    steps: np.ndarray
    test_accuracy: np.ndarray
    float_accuracy: float


@cpu_threads(1)
def qat_run(trained: Trained, digits: DigitsSplit, quant_fn: Callable, fake_fn: Callable, *,
            bits: int = 2, per_channel: bool = False, symmetric: bool = True, steps: int = 150,
            lr: float = 1e-3, eval_every: int = 25, seed: int = 2) -> QATRun:
    """Fine-tune a copy of ``trained`` with its weights fake-quantized in every forward pass.

    The float weights (the "shadow" weights) are what the optimizer (``torch.optim.Adam``,
    ``lr``) updates; every forward pass quantizes them with the learner's functions, and the
    gradient reaches a float weight only where its ``grad_mask`` is True. The accuracy reported
    is that of the quantized network.
    """
    X, y, X_test, y_test = tensors(digits)
    model = trained.copy().model
    layers = linears(model)

    def quantized_forward(m, xb):
        h = xb
        for i, layer in enumerate(layers):
            wq = _FakeQuantize.apply(layer.weight, bits, per_channel, symmetric, quant_fn,
                                     fake_fn)
            h = torch.nn.functional.linear(h, wq, layer.bias)
            if i < len(layers) - 1:
                h = torch.relu(h)
        return h

    def quantized_accuracy():
        with torch.no_grad():
            return float((quantized_forward(model, X_test).argmax(1) == y_test).double().mean())

    done, acc = [0], [quantized_accuracy()]

    def record(step, _m):
        if step % eval_every == 0 or step == steps:
            done.append(step)
            acc.append(quantized_accuracy())

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    train_steps(model, optimizer, X, y, steps, seed=seed,
                loss_fn=lambda m, xb, yb: torch.nn.functional.cross_entropy(
                    quantized_forward(m, xb), yb),
                record=record)
    return QATRun(bits, per_channel, np.array(done), np.array(acc),
                  classifier_accuracy(trained.model, X_test, y_test))
