"""Lesson 10's references and named mistakes: pruning, quantization and distillation.

References (the trusted oracles of the checks) are PyTorch's own code, wrapped to the
signature of an exercise and returning NumPy values:

- :func:`torch_magnitude_prune_mask`: ``torch.nn.utils.prune.l1_unstructured``'s mask;
- :func:`torch_structured_prune_mask`: ``torch.nn.utils.prune.ln_structured``'s mask;
- :func:`torch_quant_params`: ``torch.ao.quantization.MinMaxObserver``'s scale and zero point;
- :func:`torch_fake_quantize`: ``torch.fake_quantize_per_tensor_affine`` /
  ``torch.fake_quantize_per_channel_affine``, values and autograd's gradient mask;
- :func:`torch_distillation_loss`: ``F.kl_div`` (``reduction="batchmean"``) times ``T**2``
  plus ``F.cross_entropy``, and autograd's gradient with respect to the student's logits.

Every torch call runs on one CPU thread (:func:`dlopt.kit.threads.cpu_threads`): the tensors
are tiny, and threads waiting for a busy core make them many times slower.

The named mistakes are built on those references wherever torch can express them (a pruning
amount given as a count, the other ``dim``, the L1 norm, ``reduction="sum"``), and otherwise
written out below in NumPy as *wrong* variants (a zero point left unrounded, rounding halves
up, no clamp): instructor material, never installed for students.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.ao.quantization import MinMaxObserver
from torch.nn.utils import prune

from dlopt.kit.threads import cpu_threads

__all__ = [
    "FLOAT32_EPS",
    "distillation_variant",
    "fake_quantize_variant",
    "prune_count",
    "prune_signed",
    "prune_threshold",
    "pruned_largest",
    "pruned_per_row",
    "quant_params_variant",
    "structured_largest",
    "structured_other_dim",
    "torch_distillation_loss",
    "torch_fake_quantize",
    "torch_magnitude_prune_mask",
    "torch_quant_params",
    "torch_structured_prune_mask",
]

#: The floor of a MinMaxObserver's scale: float32's machine epsilon.
FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


def _holder(w) -> torch.nn.Module:
    """A module whose parameter ``weight`` is ``w`` (float64), for ``torch.nn.utils.prune``."""
    holder = torch.nn.Module()
    holder.register_parameter(
        "weight", torch.nn.Parameter(torch.tensor(np.asarray(w, dtype=np.float64))))
    return holder


def _fraction(amount) -> float:
    """``amount`` as a fraction, or ValueError as torch raises it: a mistake is wrong in one
    place only, and outside [0, 1] it fails like the reference (never named there)."""
    if not 0.0 <= float(amount) <= 1.0:
        raise ValueError(f"amount={amount} should be a float in the range [0, 1]")
    return float(amount)


def _amount(amount):
    """A fraction as torch reads it: a Python float (an int would be a count of entries)."""
    return amount if isinstance(amount, int) and not isinstance(amount, bool) else float(amount)


# ---------------------------------------------------------------------------------------------
# Pruning
# ---------------------------------------------------------------------------------------------
@cpu_threads(1)
def torch_magnitude_prune_mask(w, amount) -> np.ndarray:
    """The mask of ``prune.l1_unstructured(module, "weight", amount)``, as booleans.

    ``amount`` a float is a fraction (``round(amount * w.size)`` entries pruned); an int is a
    count of entries (used by the mistakes below). True = kept.
    """
    holder = _holder(w)
    prune.l1_unstructured(holder, "weight", amount=_amount(amount))
    return holder.weight_mask.numpy() != 0


@cpu_threads(1)
def torch_structured_prune_mask(w, amount, dim, *, n=2) -> np.ndarray:
    """The mask of ``prune.ln_structured(module, "weight", amount, n=n, dim=dim)``, as booleans."""
    holder = _holder(w)
    prune.ln_structured(holder, "weight", amount=_amount(amount), n=n, dim=dim)
    return holder.weight_mask.numpy() != 0


def prune_count(w, amount, count) -> np.ndarray:
    """l1_unstructured pruning ``count(amount * w.size)`` entries (``int``, ``math.ceil``...)."""
    return torch_magnitude_prune_mask(w, int(count(_fraction(amount) * np.size(w))))


@cpu_threads(1)
def pruned_largest(w, amount) -> np.ndarray:
    """The reversed condition: the ``round(amount * w.size)`` entries of LARGEST |w| pruned."""
    t = torch.tensor(np.asarray(w, dtype=np.float64)).abs().reshape(-1)
    keep = torch.ones_like(t, dtype=torch.bool)
    k = round(_fraction(amount) * t.numel())
    if k:
        keep[torch.topk(t, k, largest=True).indices] = False
    return keep.reshape(np.shape(w)).numpy()


@cpu_threads(1)
def prune_signed(w, amount) -> np.ndarray:
    """Pruned by signed value: the most negative entries go first, whatever their size."""
    t = torch.tensor(np.asarray(w, dtype=np.float64)).reshape(-1)
    keep = torch.ones_like(t, dtype=torch.bool)
    k = round(_fraction(amount) * t.numel())
    if k:
        keep[torch.topk(t, k, largest=False).indices] = False
    return keep.reshape(np.shape(w)).numpy()


def pruned_per_row(w, amount) -> np.ndarray:
    """Every row of a 2-D ``w`` pruned on its own (l1_unstructured row by row), not the tensor."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        return torch_magnitude_prune_mask(w, amount)
    return np.stack([torch_magnitude_prune_mask(row, amount) for row in w])


def prune_threshold(w, amount, *, strict: bool) -> np.ndarray:
    """A threshold instead of a count, with every entry tied at the threshold treated alike.

    ``strict=True``: ``t`` = the k-th smallest |w|, keep ``|w| > t`` (every entry tied with the
    k-th is pruned: too many). ``strict=False``: ``t`` = the (k+1)-th smallest |w|, keep
    ``|w| >= t`` (every entry tied with it is kept: too few). k = 0 keeps everything.
    """
    a = np.abs(np.asarray(w, dtype=np.float64))
    k = round(_fraction(amount) * a.size)
    if k == 0:
        return np.ones(a.shape, dtype=bool)
    ordered = np.sort(a, axis=None)
    if strict:
        return a > ordered[k - 1]
    if k == a.size:
        return np.zeros(a.shape, dtype=bool)
    return a >= ordered[k]


def structured_other_dim(w, amount, dim) -> np.ndarray:
    """ln_structured along the next axis, ``(dim + 1) % w.ndim``: for a matrix, the other one."""
    return torch_structured_prune_mask(w, amount, (dim + 1) % np.ndim(w))


@cpu_threads(1)
def structured_largest(w, amount, dim) -> np.ndarray:
    """ln_structured's slices, reversed: the slices of LARGEST L2 norm pruned."""
    w = np.asarray(w, dtype=np.float64)
    d = dim % w.ndim
    norms = torch.linalg.vector_norm(torch.tensor(w), ord=2,
                                     dim=[a for a in range(w.ndim) if a != d])
    keep = torch.ones(w.shape[d], dtype=torch.bool)
    k = round(_fraction(amount) * w.shape[d])
    if k:
        keep[torch.topk(norms, k, largest=True).indices] = False
    shape = [1] * w.ndim
    shape[d] = w.shape[d]
    return np.broadcast_to(keep.numpy().reshape(shape), w.shape).copy()


# ---------------------------------------------------------------------------------------------
# Quantization
# ---------------------------------------------------------------------------------------------
@cpu_threads(1)
def torch_quant_params(x, qmin, qmax, symmetric=False) -> tuple[float, int]:
    """Scale and zero point of ``MinMaxObserver(quant_min=qmin, quant_max=qmax)`` on ``x``.

    The observer's dtype is ``torch.quint8`` for an unsigned range (``qmin >= 0``) and
    ``torch.qint8`` for a signed one; its qscheme ``per_tensor_symmetric`` or
    ``per_tensor_affine``. It computes in float32.
    """
    observer = MinMaxObserver(
        dtype=torch.quint8 if qmin >= 0 else torch.qint8,
        qscheme=torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine,
        quant_min=int(qmin), quant_max=int(qmax))
    observer(torch.tensor(np.asarray(x, dtype=np.float64)))
    scale, zero_point = observer.calculate_qparams()
    return float(scale), int(zero_point)


def quant_params_variant(x, qmin, qmax, symmetric=False, *, widen=True, clamp=True,
                         round_zero_point=True, divide_by_qmax=False,
                         unsigned_zero_point=None) -> tuple[float, int | float]:
    """MinMaxObserver's formulas with one thing changed, for the named mistakes.

    Parameters
    ----------
    widen : bool
        False: the range is x's own [min, max], not widened to include 0.
    clamp : bool
        False: the affine zero point is not clamped to [qmin, qmax].
    round_zero_point : bool
        False: the affine zero point is ``qmin - min / scale``, a float.
    divide_by_qmax : bool
        True: ``scale = (max - min) / qmax`` (affine) or ``max|x| / qmax`` (symmetric).
    unsigned_zero_point : int, optional
        The symmetric zero point of an unsigned range (the observer's is (qmin + qmax) // 2).
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if widen:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if symmetric:
        amax = max(-lo, hi)
        scale = max(amax / (qmax if divide_by_qmax else (qmax - qmin) / 2), FLOAT32_EPS)
        if qmin < 0:
            return scale, 0
        return scale, (qmin + qmax) // 2 if unsigned_zero_point is None else unsigned_zero_point
    scale = max((hi - lo) / (qmax if divide_by_qmax else qmax - qmin), FLOAT32_EPS)
    if not round_zero_point:
        return scale, qmin - lo / scale
    zero_point = qmin - round(lo / scale)
    if clamp:
        zero_point = min(max(zero_point, qmin), qmax)
    return scale, int(zero_point)


@cpu_threads(1)
def torch_fake_quantize(x, scale, zero_point, qmin, qmax, axis=None):
    """torch's fake quantization of ``x`` and the gradient mask autograd gives it.

    Per tensor (``axis=None``): ``torch.fake_quantize_per_tensor_affine(x, scale, zero_point,
    qmin, qmax)``; per channel: ``torch.fake_quantize_per_channel_affine`` with float32
    scales and int32 zero points along ``axis``. The mask is ``x.grad != 0`` after
    ``out.sum().backward()`` (torch's straight-through estimator).

    Returns
    -------
    out : ndarray, x's shape, float64
    grad_mask : ndarray of bool, x's shape
    """
    with torch.enable_grad():
        t = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
        if axis is None:
            out = torch.fake_quantize_per_tensor_affine(t, float(scale), int(zero_point),
                                                       int(qmin), int(qmax))
        else:
            out = torch.fake_quantize_per_channel_affine(
                t, torch.tensor(np.asarray(scale, dtype=np.float64), dtype=torch.float32),
                torch.tensor(np.asarray(zero_point), dtype=torch.int32), int(axis) % t.ndim,
                int(qmin), int(qmax))
        out.sum().backward()
    return out.detach().numpy(), t.grad.numpy() != 0


def _rounded(v: np.ndarray, rounding: str) -> np.ndarray:
    if rounding == "half_even":
        return np.round(v)
    if rounding == "half_up":
        return np.floor(v + 0.5)
    if rounding == "half_away":
        return np.sign(v) * np.floor(np.abs(v) + 0.5)
    raise ValueError(rounding)


def fake_quantize_variant(x, scale, zero_point, qmin, qmax, axis=None, *,
                          rounding="half_even", clamp=True, subtract_zero_point=True,
                          mask="rounded", channel_axis=None):
    """Fake quantization with one thing changed, for the named mistakes.

    Parameters
    ----------
    rounding : {"half_even", "half_up", "half_away"}
        ``np.round``; ``floor(v + 0.5)``; ``sign(v) * floor(|v| + 0.5)``.
    clamp : bool
        False: the integer is not clamped to [qmin, qmax].
    subtract_zero_point : bool
        False: dequantized as ``q * scale`` instead of ``(q - zero_point) * scale``.
    mask : {"rounded", "all", "unrounded"}
        The gradient mask: from the rounded integer before clamping (right), True everywhere
        (the whole gradient passed through), or from the unrounded ``x / scale + zero_point``.
    channel_axis : int, optional
        Per-channel scales broadcast along this axis instead of ``axis`` (the wrong axis).
    """
    x = np.asarray(x, dtype=np.float64)
    scale_, zero_ = np.asarray(scale, dtype=np.float64), np.asarray(zero_point)
    if axis is not None:
        along = axis if channel_axis is None else channel_axis
        shape = [1] * x.ndim
        shape[along] = x.shape[along]
        scale_, zero_ = scale_.reshape(shape), zero_.reshape(shape)
    v = x / scale_
    q = _rounded(v, rounding) + zero_
    qc = np.clip(q, qmin, qmax) if clamp else q
    out = (qc - zero_) * scale_ if subtract_zero_point else qc * scale_
    if mask == "all":
        grad_mask = np.ones(x.shape, dtype=bool)
    elif mask == "unrounded":
        grad_mask = (v + zero_ >= qmin) & (v + zero_ <= qmax)
    else:
        grad_mask = (q >= qmin) & (q <= qmax)
    return np.broadcast_to(out, x.shape).copy(), np.broadcast_to(grad_mask, x.shape).copy()


# ---------------------------------------------------------------------------------------------
# Distillation
# ---------------------------------------------------------------------------------------------
def _logits(z, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(z, dtype=np.float64), requires_grad=requires_grad)


@cpu_threads(1)
def torch_distillation_loss(student_logits, teacher_logits, y, T, alpha):
    """Hinton's distillation loss by torch, and its gradient by autograd.

    ``alpha * F.kl_div(F.log_softmax(s / T), F.softmax(t / T), reduction="batchmean") * T**2
    + (1 - alpha) * F.cross_entropy(s, y)``.

    Returns
    -------
    loss : float
    dlogits : ndarray, the student logits' shape, float64
    """
    with torch.enable_grad():
        s = _logits(student_logits, requires_grad=True)
        t = _logits(teacher_logits)
        kd = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1),
                      reduction="batchmean") * T**2
        ce = F.cross_entropy(s, torch.as_tensor(np.asarray(y), dtype=torch.long))
        loss = alpha * kd + (1 - alpha) * ce
        loss.backward()
    return float(loss.detach()), s.grad.numpy()


@cpu_threads(1)
def distillation_variant(student_logits, teacher_logits, y, T, alpha, *, t_squared=True,
                         reduction="batchmean", swapped=False, student_T=None, teacher_T=None,
                         alpha_on="kd"):
    """The distillation loss by torch with one thing changed, and autograd's gradient.

    Parameters
    ----------
    t_squared : bool
        False: the soft term is not multiplied by ``T**2``.
    reduction : str
        ``F.kl_div``'s reduction: "batchmean" (right) or "mean" (divides by N * C), computed
        as ``reduction="sum"`` divided accordingly (``"mean"`` warns in torch).
    swapped : bool
        True: KL(student || teacher) instead of KL(teacher || student).
    student_T, teacher_T : float, optional
        The temperature each side is divided by (default T): 1 softens one side only.
    alpha_on : {"kd", "ce"}
        "ce": alpha weighs the cross-entropy and 1 - alpha the soft term (swapped weights).
    """
    with torch.enable_grad():
        s = _logits(student_logits, requires_grad=True)
        t = _logits(teacher_logits)
        n, c = s.shape
        log_ps = F.log_softmax(s / (T if student_T is None else student_T), dim=1)
        log_pt = F.log_softmax(t / (T if teacher_T is None else teacher_T), dim=1)
        if swapped:
            total = F.kl_div(log_pt, log_ps, reduction="sum", log_target=True)
        else:
            total = F.kl_div(log_ps, log_pt.exp(), reduction="sum")
        kd = total / (n if reduction == "batchmean" else n * c)
        if t_squared:
            kd = kd * T**2
        ce = F.cross_entropy(s, torch.as_tensor(np.asarray(y), dtype=torch.long))
        a = alpha if alpha_on == "kd" else 1 - alpha
        loss = a * kd + (1 - a) * ce
        loss.backward()
    return float(loss.detach()), s.grad.numpy()
