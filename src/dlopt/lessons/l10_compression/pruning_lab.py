"""Lesson 10: pruning experiments with the learner's two pruning functions.

- :func:`sparsity_sweep`: accuracy of a trained digits MLP against the amount pruned, one-shot
  and after fine-tuning with the mask kept, for unstructured pruning (every weight matrix) and
  structured pruning (whole hidden units: a row of a hidden layer's weight, and its bias).
- :func:`regrowth_experiment`: what happens to pruned weights when training goes on and the
  mask was applied only once: gradients and the optimizer's momentum regrow them; masking the
  gradients is not enough while momentum buffers from before the pruning remain; re-applying
  the mask after every step (what ``torch.nn.utils.prune``'s reparametrization does) keeps them
  at zero.
- :func:`storage_sweep`: what zeros buy. A dense matrix takes the same bytes and the same
  matmul time whatever its zeros; a CSR matrix (``scipy.sparse.csr_array``: float32 values,
  int32 column indices, int32 row pointers) stores only the nonzeros, and its matmul time
  shrinks with them. Measured against sparsity, with the crossovers.
- :func:`gpu_sparse_and_int8`: on CUDA, 2:4 semi-structured sparsity
  (``torch.sparse.to_sparse_semi_structured``) and an int8 matmul (``torch._int_mm``) against
  float16, timed with a synchronized host clock; the int8 operands come from the learner's
  ``quant_params`` and ``fake_quantize``.

The interfaces assumed (lesson 10): ``keep = magnitude_prune_mask(w, amount)`` and
``keep = structured_prune_mask(w, amount, dim)``, boolean masks of ``w``'s shape (True = kept)
for a float64 ``w``; ``scale, zero_point = quant_params(x, qmin, qmax, symmetric)`` and
``out, grad_mask = fake_quantize(x, scale, zero_point, qmin, qmax)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from dlopt.kit.data import DigitsSplit
from dlopt.kit.learner import LearnerError, function_name
from dlopt.kit.threads import cpu_threads
from dlopt.kit.timing import Timing, measure
from dlopt.lessons.l10_compression.digits_mlp import (
    Trained,
    check_learner,
    classifier_accuracy,
    linears,
    tensors,
    train_steps,
)

__all__ = [
    "RegrowthRun",
    "SparsitySweep",
    "StorageSweep",
    "apply_masks",
    "csr_bytes",
    "gpu_sparse_and_int8",
    "int8_matmul_error",
    "layer_masks",
    "problem_with_pruning",
    "regrowth_experiment",
    "sparsity_sweep",
    "storage_sweep",
    "two_four_mask",
]


# ---------------------------------------------------------------------------------------------
# The learner's masks on a torch model
# ---------------------------------------------------------------------------------------------
def _mask_check(shape):
    def check(mask):
        if type(mask) is not np.ndarray or mask.shape != shape:
            got = getattr(mask, "shape", type(mask).__name__)
            return f"must return a boolean array of w's shape {shape}; got {got}"
        return None

    return check


def problem_with_pruning(magnitude_fn: Callable | None = None,
                         structured_fn: Callable | None = None) -> str | None:
    """Try the learner's pruning functions on a small matrix; a message, or None if usable."""
    w = np.linspace(-1.0, 1.2, 12).reshape(3, 4)
    if magnitude_fn is not None:
        problem = check_learner(magnitude_fn, w.copy(), 0.5, check=_mask_check(w.shape))
        if problem:
            return problem
    if structured_fn is not None:
        problem = check_learner(structured_fn, w.copy(), 0.5, 0, check=_mask_check(w.shape))
        if problem:
            return problem
    return None


def _as_mask(value, shape, fn: Callable) -> torch.Tensor:
    mask = np.asarray(value)
    if mask.shape != tuple(shape):
        raise LearnerError(f"`{function_name(fn)}` returned a mask of shape {mask.shape}; "
                           f"expected {tuple(shape)}")
    return torch.from_numpy(mask.astype(bool))


def layer_masks(model: torch.nn.Module, amount: float, *, magnitude_fn: Callable | None = None,
                structured_fn: Callable | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Masks ``(weight_mask, bias_mask)`` for every Linear layer of ``model``.

    With ``magnitude_fn``: ``magnitude_fn(W, amount)`` for every weight matrix (layer by
    layer), biases kept. With ``structured_fn``: whole hidden units, ``structured_fn(W, amount,
    0)`` on the weight of every layer but the output layer (rows = the layer's units), and the
    bias of every pruned unit; the output layer is kept.
    """
    masks = []
    layers = linears(model)
    for i, layer in enumerate(layers):
        w = layer.weight.detach().double().numpy().copy()
        bias_mask = torch.ones(layer.out_features, dtype=torch.bool)
        if magnitude_fn is not None:
            weight_mask = _as_mask(magnitude_fn(w, amount), w.shape, magnitude_fn)
        elif structured_fn is not None and i < len(layers) - 1:
            weight_mask = _as_mask(structured_fn(w, amount, 0), w.shape, structured_fn)
            bias_mask = weight_mask.any(dim=1)
        else:
            weight_mask = torch.ones(w.shape, dtype=torch.bool)
        masks.append((weight_mask, bias_mask))
    return masks


def apply_masks(model: torch.nn.Module, masks: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Zero the pruned weights and biases of ``model`` in place."""
    with torch.no_grad():
        for layer, (weight_mask, bias_mask) in zip(linears(model), masks, strict=True):
            layer.weight.mul_(weight_mask)
            layer.bias.mul_(bias_mask)


def _mask_gradients(model, masks) -> None:
    for layer, (weight_mask, bias_mask) in zip(linears(model), masks, strict=True):
        if layer.weight.grad is not None:
            layer.weight.grad.mul_(weight_mask)
            layer.bias.grad.mul_(bias_mask)


def _removed_share(model, masks, structured: bool) -> float:
    """Share of the weights gone: zeros, and for units, the next layer's columns they fed."""
    layers = linears(model)
    total = sum(layer.weight.numel() for layer in layers)
    if not structured:
        return float(sum(int((~m).sum()) for m, _ in masks)) / total
    kept = 0
    alive_in = torch.ones(layers[0].in_features, dtype=torch.bool)
    for _, bias_mask in masks:
        kept += int(bias_mask.sum()) * int(alive_in.sum())
        alive_in = bias_mask
    return 1.0 - kept / total


# ---------------------------------------------------------------------------------------------
# Accuracy against sparsity
# ---------------------------------------------------------------------------------------------
@dataclass
class SparsitySweep:
    """Test accuracy against the amount pruned.

    Attributes
    ----------
    amounts : ndarray
        The ``amount`` passed to the pruning functions (share of each layer's weights, or of
        each hidden layer's units).
    accuracy : dict of str to ndarray
        ``"unstructured, one-shot"``, ``"unstructured, fine-tuned"``, ``"structured, one-shot"``,
        ``"structured, fine-tuned"`` (those that could run).
    removed : dict of str to ndarray
        ``"unstructured"`` and ``"structured"``: the share of the network's weights removed
        (for units: their row and the next layer's column they fed).
    dense_accuracy : float
    finetune_steps : int
    """

    amounts: np.ndarray
    accuracy: dict[str, np.ndarray] = field(default_factory=dict)
    removed: dict[str, np.ndarray] = field(default_factory=dict)
    dense_accuracy: float = float("nan")
    finetune_steps: int = 0


@cpu_threads(1)
def sparsity_sweep(base: Trained, digits: DigitsSplit, amounts: Sequence[float], *,
                   magnitude_fn: Callable | None = None, structured_fn: Callable | None = None,
                   finetune_steps: int = 60, lr: float = 0.02, seed: int = 1) -> SparsitySweep:
    """Prune copies of ``base`` by each amount; test accuracy one-shot and after fine-tuning.

    Fine-tuning: ``finetune_steps`` mini-batch steps of a fresh ``torch.optim.SGD`` (momentum
    0.9, learning rate ``lr``) with the mask re-applied after every step. Either pruning
    function may be None (that half of the sweep is skipped).
    """
    X, y, X_test, y_test = tensors(digits)
    sweep = SparsitySweep(np.asarray(amounts, dtype=float), dense_accuracy=base.test_accuracy,
                          finetune_steps=finetune_steps)
    kinds = {"unstructured": {"magnitude_fn": magnitude_fn},
             "structured": {"structured_fn": structured_fn}}
    for kind, fns in kinds.items():
        if next(iter(fns.values())) is None:
            continue
        one_shot, tuned, removed = [], [], []
        for amount in sweep.amounts:
            model = base.copy().model
            masks = layer_masks(model, float(amount), **fns)
            apply_masks(model, masks)
            removed.append(_removed_share(model, masks, kind == "structured"))
            one_shot.append(classifier_accuracy(model, X_test, y_test))
            optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
            train_steps(model, optimizer, X, y, finetune_steps, seed=seed,
                        after_step=lambda m, masks=masks: apply_masks(m, masks))
            tuned.append(classifier_accuracy(model, X_test, y_test))
        sweep.accuracy[f"{kind}, one-shot"] = np.array(one_shot)
        sweep.accuracy[f"{kind}, fine-tuned"] = np.array(tuned)
        sweep.removed[kind] = np.array(removed)
    return sweep


# ---------------------------------------------------------------------------------------------
# Pruned weights regrow
# ---------------------------------------------------------------------------------------------
@dataclass
class RegrowthRun:
    """One way of fine-tuning a pruned network.

    Attributes
    ----------
    label : str
    steps : ndarray
        0 (right after pruning) to the number of fine-tuning steps.
    regrown : ndarray
        Share of the pruned weights that are nonzero after each step.
    sparsity : ndarray
        Share of all weights that are exactly zero after each step.
    test_accuracy : float
        After the last step.
    """

    label: str
    steps: np.ndarray
    regrown: np.ndarray
    sparsity: np.ndarray
    test_accuracy: float


REGROWTH_VARIANTS = {
    "mask applied once": dict(mask_grads=False, fresh=False, every_step=False),
    "gradients masked, momentum kept": dict(mask_grads=True, fresh=False, every_step=False),
    "gradients masked, fresh optimizer": dict(mask_grads=True, fresh=True, every_step=False),
    "mask re-applied after every step": dict(mask_grads=False, fresh=False, every_step=True),
}


@cpu_threads(1)
def regrowth_experiment(base: Trained, digits: DigitsSplit, magnitude_fn: Callable, *,
                        amount: float = 0.9, steps: int = 100,
                        variants: Sequence[str] = tuple(REGROWTH_VARIANTS),
                        seed: int = 1) -> dict[str, RegrowthRun]:
    """Prune ``base`` once (``magnitude_fn`` on every layer), then keep training it.

    Every variant continues with ``base``'s own ``torch.optim.SGD`` (its momentum buffers
    from the dense training, its weight decay) for ``steps`` mini-batch steps, except
    "gradients masked, fresh optimizer", which starts a new SGD with the same hyperparameters.

    - "mask applied once": the weights are zeroed, then training simply goes on;
    - "gradients masked, momentum kept": the gradients of pruned weights are zeroed before
      every step too, but the momentum buffers still hold the dense network's velocity;
    - "gradients masked, fresh optimizer": masked gradients and empty momentum buffers (weight
      decay still on: it pulls a weight towards 0 in proportion to the weight, so not at all
      for a weight at 0);
    - "mask re-applied after every step": ``w *= mask`` after every optimizer step.
    """
    X, y, X_test, y_test = tensors(digits)
    masks = layer_masks(base.model, amount, magnitude_fn=magnitude_fn)
    pruned = [~m for m, _ in masks]
    n_pruned = sum(int(p.sum()) for p in pruned)
    total = sum(int(m.numel()) for m, _ in masks)
    runs = {}
    for label in variants:
        options = REGROWTH_VARIANTS[label]
        trained = base.copy()
        model, optimizer = trained.model, trained.optimizer
        if options["fresh"]:
            optimizer = torch.optim.SGD(model.parameters(), **base.optimizer.defaults)
        apply_masks(model, masks)
        regrown: list[float] = []
        sparsity: list[float] = []

        def record(_step, m, regrown=regrown, sparsity=sparsity):
            weights = [layer.weight.detach() for layer in linears(m)]
            alive = sum(int(((w != 0) & p).sum()) for w, p in zip(weights, pruned, strict=True))
            zeros = sum(int((w == 0).sum()) for w in weights)
            regrown.append(alive / n_pruned if n_pruned else 0.0)
            sparsity.append(zeros / total)

        record(0, model)
        train_steps(model, optimizer, X, y, steps, seed=seed,
                    before_step=(lambda m: _mask_gradients(m, masks)) if options["mask_grads"]
                    else None,
                    after_step=(lambda m: apply_masks(m, masks)) if options["every_step"]
                    else None,
                    record=record)
        runs[label] = RegrowthRun(label, np.arange(steps + 1), np.array(regrown),
                                  np.array(sparsity), classifier_accuracy(model, X_test, y_test))
    return runs


# ---------------------------------------------------------------------------------------------
# What zeros buy: dense against CSR
# ---------------------------------------------------------------------------------------------
def csr_bytes(nnz: int, n_rows: int, *, value_bytes: int = 4, index_bytes: int = 4) -> int:
    """Bytes of a CSR matrix: ``nnz`` values and column indices, ``n_rows + 1`` row pointers."""
    return nnz * (value_bytes + index_bytes) + (n_rows + 1) * index_bytes


@dataclass
class StorageSweep:
    """Dense against CSR storage and matmul time, across sparsity.

    Attributes
    ----------
    sparsities : ndarray
        Share of the weight matrix pruned (by the learner's ``magnitude_prune_mask``).
    shape : (int, int)
        The weight matrix's shape; it multiplies a float32 batch of ``batch`` columns.
    batch : int
    dense_bytes : int
        ``rows * cols * 4``, whatever the sparsity.
    csr_bytes : ndarray of int
        ``scipy.sparse.csr_array``'s ``data``, ``indices`` and ``indptr`` bytes.
    dense : list of Timing
        ``W @ X`` with torch (dense, one thread), at each sparsity.
    csr : list of Timing
        ``W_csr @ X`` with scipy (one thread), at each sparsity.
    """

    sparsities: np.ndarray
    shape: tuple[int, int]
    batch: int
    dense_bytes: int
    csr_bytes: np.ndarray
    dense: list[Timing]
    csr: list[Timing]

    def seconds(self, kind: str) -> np.ndarray:
        """Median seconds per matmul of ``"dense"`` or ``"csr"`` at each sparsity."""
        return np.array([t.median for t in getattr(self, kind)])

    @property
    def size_crossover(self) -> float | None:
        """The lowest measured sparsity at which CSR takes fewer bytes than dense, or None."""
        smaller = np.flatnonzero(self.csr_bytes < self.dense_bytes)
        return float(self.sparsities[smaller[0]]) if smaller.size else None

    @property
    def time_crossover(self) -> float | None:
        """The lowest measured sparsity from which on CSR's matmul is faster, or None."""
        faster = self.seconds("csr") < self.seconds("dense")
        for i in range(len(faster)):
            if faster[i:].all():
                return float(self.sparsities[i])
        return None


def storage_sweep(magnitude_fn: Callable, sparsities: Sequence[float], *,
                  shape: tuple[int, int] = (512, 512), batch: int = 64, repeat: int = 7,
                  seed: int = 0) -> StorageSweep:
    """Prune one random weight matrix by each sparsity and time dense and CSR matmuls.

    The matrix (Gaussian, ``shape``) is pruned by the learner's ``magnitude_fn``; the dense
    product is ``torch.mm`` in float32 on one thread, the sparse one scipy's CSR product
    (single-threaded) with the same float32 batch. Each time is the median of ``repeat``
    runs (each the mean of 2 calls) after one warm-up call.
    """
    import scipy.sparse

    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape)
    x = rng.standard_normal((shape[1], batch)).astype(np.float32)
    xt = torch.from_numpy(x)
    dense, csr, nbytes = [], [], []
    with cpu_threads(1):
        for sparsity in sparsities:
            keep = _as_mask(magnitude_fn(w.copy(), float(sparsity)), shape, magnitude_fn).numpy()
            pruned = (w * keep).astype(np.float32)
            wt = torch.from_numpy(pruned)
            sparse = scipy.sparse.csr_array(pruned)
            nbytes.append(sparse.data.nbytes + sparse.indices.nbytes + sparse.indptr.nbytes)
            number = 2
            dense.append(measure(lambda wt=wt: torch.mm(wt, xt), repeat=repeat, number=number))
            csr.append(measure(lambda s=sparse: s @ x, repeat=repeat, number=number))
    return StorageSweep(np.asarray(sparsities, dtype=float), tuple(shape), batch,
                        int(np.prod(shape)) * 4, np.array(nbytes), dense, csr)


# ---------------------------------------------------------------------------------------------
# On a GPU: 2:4 sparsity and int8
# ---------------------------------------------------------------------------------------------
def two_four_mask(w: torch.Tensor) -> torch.Tensor:
    """The 2:4 pattern: in every group of 4 consecutive entries of a row, keep the 2 largest |w|.

    Parameters
    ----------
    w : tensor, shape (rows, cols) with cols a multiple of 4
    """
    rows, cols = w.shape
    groups = w.abs().reshape(rows, cols // 4, 4)
    top = groups.topk(2, dim=-1).indices
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    return keep.reshape(rows, cols)


def _int8(t: torch.Tensor, quant_fn: Callable, fake_fn: Callable) -> tuple[torch.Tensor, float]:
    """``t`` as int8 with the learner's symmetric scale (zero point 0) and fake quantization.

    The integers are the learner's ``fake_quantize`` output divided by the scale (exact
    multiples of it, rounded back to integers).
    """
    x = t.detach().double().cpu().numpy()
    scale, _ = quant_fn(x, -128, 127, True)
    out, _ = fake_fn(x, float(scale), 0, -128, 127)
    q = np.rint(np.asarray(out, dtype=np.float64) / float(scale)).astype(np.int8)
    return torch.from_numpy(q).to(t.device), float(scale)


@cpu_threads(1)
def int8_matmul_error(quant_fn: Callable, fake_fn: Callable, *, n: int = 256,
                      batch: int = 64, device: str = "cpu", seed: int = 0) -> float:
    """Relative error of an int8 matmul, ``||Y8 - Y|| / ||Y||``, against float32.

    ``W`` (``n x n``) and ``X`` (``n x batch``), Gaussian, are quantized to int8 with the
    learner's symmetric ``quant_params`` (range [-128, 127]) and ``fake_quantize``;
    ``torch._int_mm`` multiplies them with int32 accumulation, and the product is rescaled by
    ``scale_W * scale_X``.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    w = torch.randn(n, n, generator=gen).to(device)
    x = torch.randn(n, batch, generator=gen).to(device)
    wq, sw = _int8(w, quant_fn, fake_fn)
    xq, sx = _int8(x, quant_fn, fake_fn)
    y = torch.mm(w, x)
    y8 = torch._int_mm(wq, xq).float() * (sw * sx)
    return float(torch.linalg.norm(y8 - y) / torch.linalg.norm(y))


def gpu_sparse_and_int8(quant_fn: Callable, fake_fn: Callable, *, n: int = 4096,
                        batch: int = 4096, repeat: int = 20, device: str = "cuda") -> dict:
    """Time float16, 2:4-sparse float16 and int8 matmuls of an ``n x n`` weight on a GPU.

    Each time is the median of ``repeat`` runs after 3 warm-up calls, with
    ``torch.cuda.synchronize`` before every clock reading.

    Returns
    -------
    dict
        ``"float16"``, ``"2:4 sparse float16"`` (absent when this GPU or build cannot make a
        semi-structured tensor; ``"2:4 error"`` then says why) and ``"int8 (torch._int_mm)"``:
        :class:`dlopt.kit.timing.Timing` of ``W @ X``; ``"int8 relative error"``: the int8
        product's error against float32 (:func:`int8_matmul_error`).
    """
    sync = torch.cuda.synchronize
    gen = torch.Generator(device="cpu").manual_seed(0)
    w16 = torch.randn(n, n, generator=gen).to(device).half()
    x16 = torch.randn(n, batch, generator=gen).to(device).half()
    results: dict = {"float16": measure(lambda: torch.mm(w16, x16), repeat=repeat, warmup=3,
                                        sync=sync)}
    try:
        from torch.sparse import to_sparse_semi_structured

        with warnings.catch_warnings():  # the semi-structured tensor subclass warns it is beta
            warnings.simplefilter("ignore", UserWarning)
            w24 = to_sparse_semi_structured(w16 * two_four_mask(w16))
            results["2:4 sparse float16"] = measure(lambda: torch.mm(w24, x16), repeat=repeat,
                                                    warmup=3, sync=sync)
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        results["2:4 error"] = f"{type(exc).__name__}: {exc}"
    wq, _ = _int8(w16.float(), quant_fn, fake_fn)
    xq, _ = _int8(x16.float(), quant_fn, fake_fn)
    xq = xq.t().contiguous().t()  # column-major: cuBLASLt's int8 kernels are slow on row-major B
    results["int8 (torch._int_mm)"] = measure(lambda: torch._int_mm(wq, xq), repeat=repeat,
                                              warmup=3, sync=sync)
    results["int8 relative error"] = int8_matmul_error(quant_fn, fake_fn, n=n,
                                                       batch=min(batch, 1024), device=device)
    return results
