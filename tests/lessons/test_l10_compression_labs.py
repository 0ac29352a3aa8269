"""Lesson 10's dlopt modules and instructor references, with compression functions written here.

dlopt holds no pruning, quantization or distillation of its own: these tests bring them
(``magnitude_prune_mask`` ... ``distillation_loss`` below, the lesson's interface), plus stubs.
The references of ``dlopt_instructor.compression`` are checked against torch called directly:
``prune.l1_unstructured`` and ``prune.ln_structured`` on real modules, ``MinMaxObserver``, the
fake-quantize functions and their autograd gradient, ``F.kl_div`` and its gradient. No test
asserts on a measured time (the machine is shared); CUDA tests run only where a GPU is present.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch
import torch.nn.functional as F
from torch.ao.quantization import FakeQuantize, MinMaxObserver
from torch.nn.utils import prune

from dlopt.grading.drivers.pruning import UnusableMask, pruned_magnitudes
from dlopt.kit import plotting
from dlopt.kit.data import load_digits_split
from dlopt.lessons.l10_compression import (
    compression_plots,
    digits_mlp,
    distill_lab,
    pruning_lab,
    quant_lab,
)
from dlopt_instructor import compression as ref

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# --- the lesson's functions, written here ------------------------------------------------------
def magnitude_prune_mask(w, amount):
    if not 0.0 <= amount <= 1.0:
        raise ValueError("amount must be in [0, 1]")
    keep = np.ones(np.size(w), dtype=bool)
    keep[np.argsort(np.abs(w), axis=None)[:round(amount * np.size(w))]] = False
    return keep.reshape(np.shape(w))


def structured_prune_mask(w, amount, dim):
    dim %= w.ndim
    norms = np.sqrt((w**2).sum(axis=tuple(a for a in range(w.ndim) if a != dim)))
    keep = np.ones(w.shape[dim], dtype=bool)
    keep[np.argsort(norms)[:round(amount * w.shape[dim])]] = False
    return np.moveaxis(np.broadcast_to(keep, np.moveaxis(w, dim, -1).shape), -1, dim).copy()


def quant_params(x, qmin, qmax, symmetric=False):
    lo, hi = min(float(np.min(x)), 0.0), max(float(np.max(x)), 0.0)
    if symmetric:
        zero_point = 0 if qmin < 0 else (qmin + qmax) // 2
        return max(max(-lo, hi) / ((qmax - qmin) / 2), 2.0**-23), zero_point
    scale = max((hi - lo) / (qmax - qmin), 2.0**-23)
    return scale, min(max(qmin - round(lo / scale), qmin), qmax)


def fake_quantize(x, scale, zero_point, qmin, qmax, axis=None):
    s, z = np.asarray(scale, dtype=float), np.asarray(zero_point)
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    q = np.round(x / s) + z
    return (np.clip(q, qmin, qmax) - z) * s, (q >= qmin) & (q <= qmax)


def distillation_loss(s, t, y, T, alpha):
    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    n = len(s)
    lps, lpt, lp = log_softmax(s / T), log_softmax(t / T), log_softmax(s)
    onehot = np.eye(s.shape[1])[y]
    kd = T**2 * np.sum(np.exp(lpt) * (lpt - lps)) / n
    loss = alpha * kd - (1 - alpha) * np.mean(lp[np.arange(n), y])
    grad = alpha * T * (np.exp(lps) - np.exp(lpt)) / n + (1 - alpha) * (np.exp(lp) - onehot) / n
    return float(loss), grad


def stub(*args, **kwargs):
    raise NotImplementedError("replace this line with your code")


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


@pytest.fixture(scope="module")
def base(digits):
    return digits_mlp.train_classifier(digits, (64, 16, 16, 10), steps=60)


# --- the references are torch's own ---------------------------------------------------------------
@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.77, 1.0])
def test_magnitude_reference_is_l1_unstructured_on_a_linear_layer(amount):
    layer = torch.nn.Linear(7, 5).double()
    w = layer.weight.detach().numpy().copy()
    prune.l1_unstructured(layer, "weight", amount=amount)
    mask = ref.torch_magnitude_prune_mask(w, amount)
    assert mask.dtype == bool and mask.shape == w.shape
    np.testing.assert_array_equal(mask, layer.weight_mask.numpy() == 1)
    assert (~mask).sum() == round(amount * w.size)
    np.testing.assert_array_equal(layer.weight.detach().numpy(), w * mask)  # weight_orig * mask
    np.testing.assert_array_equal(magnitude_prune_mask(w, amount), mask)


@pytest.mark.parametrize("dim", [0, 1, -1, 3])
def test_structured_reference_is_ln_structured_on_a_convolution(dim):
    conv = torch.nn.Conv2d(4, 6, 3).double()
    w = conv.weight.detach().numpy().copy()
    prune.ln_structured(conv, "weight", amount=0.5, n=2, dim=dim)
    mask = ref.torch_structured_prune_mask(w, 0.5, dim)
    np.testing.assert_array_equal(mask, conv.weight_mask.numpy() == 1)
    np.testing.assert_array_equal(structured_prune_mask(w, 0.5, dim), mask)
    l1 = ref.torch_structured_prune_mask(w, 0.5, dim, n=1)
    assert l1.shape == w.shape  # another norm, still whole slices
    kept = np.moveaxis(mask, dim, 0).reshape(w.shape[dim], -1)
    assert (kept.all(axis=1) | ~kept.any(axis=1)).all()


def test_the_pruning_mistakes_are_wrong_in_one_place():
    w = np.array([[0.3, -0.1, 0.05, 0.2], [-0.4, 0.9, -0.02, 1.5], [0.7, -0.6, 1.25, -3.1]])
    right = ref.torch_magnitude_prune_mask(w, 0.5)
    largest = ref.pruned_largest(w, 0.5)
    assert (~largest).sum() == 6 and not (largest == right).all()
    np.testing.assert_array_equal(~largest, np.abs(w) >= 0.6)
    assert (~ref.prune_count(w, 0.35, int)).sum() == 4  # int(4.2) = 4 = round(4.2)
    assert (~ref.prune_count(np.ones(10), 0.35, int)).sum() == 3
    assert (~ref.pruned_per_row(w, 0.5)).sum(axis=1).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(~ref.prune_signed(w, 0.25), w <= -0.4)
    for fn in (ref.pruned_largest, ref.prune_signed, lambda w, a: ref.prune_count(w, a, int)):
        with pytest.raises(ValueError):
            fn(w, 1.5)
    ties = np.array([0.5, -0.1, 0.5, 0.9, -0.5, 0.3, 0.5, 2.0])
    assert (~ref.prune_threshold(ties, 0.375, strict=True)).sum() == 6
    assert (~ref.prune_threshold(ties, 0.375, strict=False)).sum() == 2
    assert (~ref.torch_magnitude_prune_mask(ties, 0.375)).sum() == 3


@pytest.mark.parametrize("qscheme", [torch.per_tensor_affine, torch.per_tensor_symmetric])
@pytest.mark.parametrize("qmin,qmax", [(0, 255), (-128, 127), (-2, 1), (0, 3)])
def test_quant_params_reference_is_the_min_max_observer(qscheme, qmin, qmax):
    x = np.random.default_rng(1).normal(size=64) * 2 + 0.5
    observer = MinMaxObserver(dtype=torch.quint8 if qmin >= 0 else torch.qint8, qscheme=qscheme,
                              quant_min=qmin, quant_max=qmax)
    observer(torch.tensor(x, dtype=torch.float32))
    scale, zero_point = observer.calculate_qparams()
    symmetric = qscheme == torch.per_tensor_symmetric
    got = ref.torch_quant_params(x, qmin, qmax, symmetric)
    assert got == (float(scale), int(zero_point))
    mine = quant_params(x, qmin, qmax, symmetric)
    assert mine[0] == pytest.approx(got[0], rel=1e-6) and mine[1] == got[1]
    if symmetric:
        assert got[1] == (0 if qmin < 0 else (qmin + qmax) // 2)


def test_the_observer_s_default_unsigned_zero_point_differs_from_an_explicit_range():
    x = torch.tensor([-2.0, 1.0])
    default = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_symmetric)
    default(x)
    assert int(default.calculate_qparams()[1]) == 128
    assert ref.torch_quant_params(x.numpy(), 0, 255, True)[1] == 127


def test_quant_params_variants_change_one_thing():
    x = np.array([2.0, 5.0, 3.5])
    assert ref.quant_params_variant(x, 0, 255) == pytest.approx(ref.torch_quant_params(x, 0, 255))
    assert ref.quant_params_variant(x, 0, 255, widen=False)[1] == 0
    assert ref.quant_params_variant(x, 0, 255, widen=False, clamp=False)[1] == -170
    assert isinstance(ref.quant_params_variant(np.array([-1.0, 3.0]), 0, 255,
                                               round_zero_point=False)[1], float)
    assert ref.quant_params_variant(np.array([-1.0, 1.0]), -128, 127, True,
                                    divide_by_qmax=True)[0] == pytest.approx(1 / 127)
    assert ref.torch_quant_params(np.zeros(3), 0, 255) == (ref.FLOAT32_EPS, 0)


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_fake_quantize_reference_is_torch_values_and_autograd(axis):
    x = np.random.default_rng(2).normal(size=(3, 4)) * 3
    n = None if axis is None else x.shape[axis]
    scale = 0.25 if axis is None else np.array([0.25, 0.5, 0.125, 1.0][:n])
    zero_point = -2 if axis is None else np.arange(n) - 1
    out, mask = ref.torch_fake_quantize(x, scale, zero_point, -8, 7, axis)
    t = torch.tensor(x, requires_grad=True)
    if axis is None:
        expected = torch.fake_quantize_per_tensor_affine(t, scale, zero_point, -8, 7)
    else:
        expected = torch.fake_quantize_per_channel_affine(
            t, torch.tensor(scale, dtype=torch.float32),
            torch.tensor(zero_point, dtype=torch.int32), axis % 2, -8, 7)
    expected.backward(torch.full_like(t, 3.0))
    np.testing.assert_array_equal(out, expected.detach().numpy())
    np.testing.assert_array_equal(mask, t.grad.numpy() == 3.0)  # the gradient is the mask itself
    assert mask.dtype == bool and (~mask).any()
    mine, my_mask = fake_quantize(x, scale, zero_point, -8, 7, axis)
    np.testing.assert_allclose(mine, out, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(my_mask, mask)


def test_fake_quantize_reference_agrees_with_the_fake_quantize_module():
    x = torch.randn(50, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    module = FakeQuantize(observer=MinMaxObserver, quant_min=0, quant_max=15, dtype=torch.quint8)
    out = module(x.float())
    scale, zero_point = float(module.scale), int(module.zero_point)
    got, _ = ref.torch_fake_quantize(x.float().double().numpy(), scale, zero_point, 0, 15)
    np.testing.assert_allclose(got, out.double().numpy(), rtol=0, atol=1e-6)
    assert (scale, zero_point) == pytest.approx(ref.torch_quant_params(x.numpy(), 0, 15), rel=1e-6)


def test_fake_quantize_variants():
    x = np.array([0.25, -0.25, 1.25, -1.25, 9.0])
    right, mask = ref.torch_fake_quantize(x, 0.5, 0, -8, 7)
    np.testing.assert_array_equal(right, [0.0, -0.0, 1.0, -1.0, 3.5])
    up, _ = ref.fake_quantize_variant(x, 0.5, 0, -8, 7, rounding="half_up")
    away, _ = ref.fake_quantize_variant(x, 0.5, 0, -8, 7, rounding="half_away")
    np.testing.assert_array_equal(up, [0.5, 0.0, 1.5, -1.0, 3.5])
    np.testing.assert_array_equal(away, [0.5, -0.5, 1.5, -1.5, 3.5])
    assert ref.fake_quantize_variant(x, 0.5, 0, -8, 7, clamp=False)[0][-1] == 9.0
    assert ref.fake_quantize_variant(x, 0.5, 0, -8, 7, mask="all")[1].all() and not mask.all()


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (4.0, 0.9), (2.0, 1.0), (3.0, 0.0)])
def test_distillation_reference_is_kl_div_batchmean_times_t_squared(T, alpha):
    rng = np.random.default_rng(4)
    s, t, y = rng.normal(size=(6, 5)) * 2, rng.normal(size=(6, 5)) * 2, rng.integers(0, 5, size=6)
    loss, grad = ref.torch_distillation_loss(s, t, y, T, alpha)
    st = torch.tensor(s, requires_grad=True)
    kd = F.kl_div(F.log_softmax(st / T, dim=1), F.softmax(torch.tensor(t) / T, dim=1),
                  reduction="batchmean") * T**2
    total = alpha * kd + (1 - alpha) * F.cross_entropy(st, torch.tensor(y))
    total.backward()
    assert loss == pytest.approx(float(total.detach()), rel=1e-14)
    np.testing.assert_allclose(grad, st.grad.numpy(), rtol=1e-12)
    mine, my_grad = distillation_loss(s, t, y, T, alpha)
    assert mine == pytest.approx(loss, rel=1e-10)
    np.testing.assert_allclose(my_grad, grad, rtol=1e-9, atol=1e-14)
    variant, _ = ref.distillation_variant(s, t, y, T, alpha)
    assert variant == pytest.approx(loss, rel=1e-12)  # the variants' base is the reference


def test_distillation_variants_change_one_thing():
    rng = np.random.default_rng(5)
    s, t, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), np.array([0, 1, 2, 0])
    kd_only, _ = ref.distillation_variant(s, t, y, 3.0, 1.0)
    no_t2 = ref.distillation_variant(s, t, y, 3.0, 1.0, t_squared=False)[0]
    assert no_t2 == pytest.approx(kd_only / 9)
    mean = ref.distillation_variant(s, t, y, 3.0, 1.0, reduction="mean")[0]
    assert mean == pytest.approx(kd_only / 3)
    swapped = ref.distillation_variant(s, t, y, 3.0, 1.0, swapped=True)[0]
    assert swapped > 0 and swapped != pytest.approx(kd_only)
    ce = float(F.cross_entropy(torch.tensor(s), torch.tensor(y)))
    assert ref.distillation_variant(s, t, y, 3.0, 1.0, alpha_on="ce")[0] == pytest.approx(ce)


# --- the tie driver ----------------------------------------------------------------------------
def test_pruned_magnitudes_is_the_same_for_every_tie_break():
    w = np.array([0.5, -0.1, 0.5, 0.9, -0.5, 0.3, 0.5, 2.0])

    def last_first(w, amount):
        keep = np.ones(w.size, dtype=bool)
        keep[[1, 5, 6]] = False
        return keep

    summary = pruned_magnitudes(magnitude_prune_mask, w, 0.375)
    assert summary["number of pruned entries"] == 3
    np.testing.assert_array_equal(summary["|w| of the pruned entries, sorted"], [0.1, 0.3, 0.5])
    other = pruned_magnitudes(last_first, w, 0.375)
    assert other["number of pruned entries"] == 3
    np.testing.assert_array_equal(other["|w| of the pruned entries, sorted"], [0.1, 0.3, 0.5])
    ints = pruned_magnitudes(lambda w, a: magnitude_prune_mask(w, a).astype(int), w, 0.375)
    assert ints["number of pruned entries"] == 3


@pytest.mark.parametrize("result,match", [
    ([True, False], "numpy array"),
    (np.ones(3, dtype=bool), "shape"),
    (np.full(8, 0.5), "boolean mask"),
])
def test_pruned_magnitudes_refuses_what_is_not_a_mask(result, match):
    with pytest.raises(UnusableMask, match=match):
        pruned_magnitudes(lambda w, a: result, np.ones(8), 0.5)


def test_pruned_magnitudes_reads_the_weights_before_the_call():
    def zeroes_w(w, amount):
        keep = magnitude_prune_mask(w, amount)
        w[...] = 0.0
        return keep

    summary = pruned_magnitudes(zeroes_w, np.array([1.0, -2.0, 3.0, 0.5]), 0.5)
    np.testing.assert_array_equal(summary["|w| of the pruned entries, sorted"], [0.5, 1.0])


# --- digits_mlp -----------------------------------------------------------------------------------
def test_training_is_reproducible_and_restores_torch_threads(digits):
    before = torch.get_num_threads()
    a = digits_mlp.train_classifier(digits, (64, 8, 10), steps=20)
    b = digits_mlp.train_classifier(digits, (64, 8, 10), steps=20)
    assert torch.get_num_threads() == before
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    copy = a.copy()
    assert copy.optimizer.state_dict()["state"][0]["momentum_buffer"] is not None
    assert copy.model[0].weight is not a.model[0].weight
    assert [m.out_features for m in digits_mlp.linears(a.model)] == [8, 10]


def test_check_learner_names_the_problem():
    assert digits_mlp.check_learner(stub, 1) == "implement `stub` first"
    assert "raised ZeroDivisionError" in digits_mlp.check_learner(lambda: 1 / 0)
    assert digits_mlp.check_learner(len, [1], check=lambda r: "is odd" if r % 2 else None) == \
        "`len` is odd"
    assert digits_mlp.check_learner(len, [1, 2], check=lambda r: None) is None


# --- pruning_lab ----------------------------------------------------------------------------------
def test_problem_with_pruning():
    assert pruning_lab.problem_with_pruning(stub) == "implement `stub` first"
    assert pruning_lab.problem_with_pruning(magnitude_prune_mask, stub) == "implement `stub` first"
    assert "shape" in pruning_lab.problem_with_pruning(lambda w, a: np.ones(3, dtype=bool))
    assert pruning_lab.problem_with_pruning(magnitude_prune_mask, structured_prune_mask) is None


def test_layer_masks_prune_weights_or_whole_units(base):
    unstructured = pruning_lab.layer_masks(base.model, 0.5, magnitude_fn=magnitude_prune_mask)
    assert [int((~m).sum()) for m, _ in unstructured] == [512, 128, 80]
    assert all(b.all() for _, b in unstructured)
    units = pruning_lab.layer_masks(base.model, 0.25, structured_fn=structured_prune_mask)
    assert [int((~b).sum()) for _, b in units] == [4, 4, 0]
    for weight_mask, bias_mask in units:
        np.testing.assert_array_equal(weight_mask.any(dim=1), bias_mask)
    model = base.copy().model
    pruning_lab.apply_masks(model, units)
    assert (model[0].weight[~units[0][1]] == 0).all() and (model[0].bias[~units[0][1]] == 0).all()


def test_sparsity_sweep_and_removed_shares(base, digits):
    sweep = pruning_lab.sparsity_sweep(base, digits, [0.5, 0.75], magnitude_fn=magnitude_prune_mask,
                                       structured_fn=structured_prune_mask, finetune_steps=3)
    assert set(sweep.accuracy) == {"unstructured, one-shot", "unstructured, fine-tuned",
                                   "structured, one-shot", "structured, fine-tuned"}
    np.testing.assert_allclose(sweep.removed["unstructured"], [0.5, 0.75])
    # units: 64*16 + 16*16 + 16*10 = 1440 weights; half the units keep 64*8 + 8*8 + 8*10
    assert sweep.removed["structured"][0] == pytest.approx(1 - (512 + 64 + 80) / 1440)
    assert sweep.dense_accuracy == base.test_accuracy
    half = pruning_lab.sparsity_sweep(base, digits, [0.5], magnitude_fn=magnitude_prune_mask,
                                      finetune_steps=1)
    assert set(half.accuracy) == {"unstructured, one-shot", "unstructured, fine-tuned"}


def test_regrowth_needs_the_mask_after_every_step(base, digits):
    runs = pruning_lab.regrowth_experiment(base, digits, magnitude_prune_mask, amount=0.8, steps=4)
    assert runs["mask applied once"].regrown[0] == 0 and runs["mask applied once"].regrown[1] > 0.9
    assert runs["gradients masked, momentum kept"].regrown[1] > 0.9
    for kept in ("gradients masked, fresh optimizer", "mask re-applied after every step"):
        assert (runs[kept].regrown == 0).all()
        assert runs[kept].sparsity[-1] == pytest.approx(0.8, abs=0.01)
    assert base.model[0].weight.count_nonzero() == base.model[0].weight.numel()  # base untouched


def test_storage_sweep_counts_csr_bytes_exactly():
    sweep = pruning_lab.storage_sweep(magnitude_prune_mask, [0.0, 0.5, 0.9], shape=(64, 32),
                                      batch=8, repeat=2)
    assert sweep.dense_bytes == 64 * 32 * 4
    for s, nbytes in zip(sweep.sparsities, sweep.csr_bytes, strict=True):
        nnz = 64 * 32 - round(s * 64 * 32)
        assert nbytes == pruning_lab.csr_bytes(nnz, 64)
    matrix = scipy.sparse.csr_array(np.eye(5, dtype=np.float32))
    nbytes = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    assert pruning_lab.csr_bytes(5, 5) == nbytes
    assert sweep.size_crossover == 0.9
    assert all(len(t.runs) == 2 for t in sweep.dense + sweep.csr)
    assert sweep.time_crossover in (None, 0.0, 0.5, 0.9)


def test_two_four_mask_keeps_two_of_every_four():
    w = torch.tensor([[0.1, -3.0, 2.0, 0.5, 1.0, 1.5, -0.2, 0.0]])
    keep = pruning_lab.two_four_mask(w)
    assert keep.tolist() == [[False, True, True, False, True, True, False, False]]
    big = pruning_lab.two_four_mask(torch.randn(16, 64))
    assert (big.reshape(16, 16, 4).sum(-1) == 2).all()


def test_int8_matmul_error_uses_the_learners_scales():
    error = pruning_lab.int8_matmul_error(quant_params, fake_quantize, n=64, batch=32)
    assert 1e-3 < error < 0.05
    calls = []

    def spy(x, qmin, qmax, symmetric=False):
        calls.append((qmin, qmax, symmetric))
        return quant_params(x, qmin, qmax, symmetric)

    pruning_lab.int8_matmul_error(spy, fake_quantize, n=32, batch=32)
    assert calls == [(-128, 127, True)] * 2


@cuda
@pytest.mark.gpu
def test_gpu_sparse_and_int8_times_all_three():
    results = pruning_lab.gpu_sparse_and_int8(quant_params, fake_quantize, n=1024, batch=1024,
                                              repeat=3)
    assert results["float16"].median > 0 and results["int8 (torch._int_mm)"].median > 0
    assert "2:4 sparse float16" in results or "2:4 error" in results
    assert results["int8 relative error"] < 0.05


# --- quant_lab ------------------------------------------------------------------------------------
def test_int_range():
    assert quant_lab.int_range(8, True) == (-128, 127)
    assert quant_lab.int_range(8, False) == (0, 255)
    assert quant_lab.int_range(2, True) == (-2, 1)


def test_problem_with_quantization():
    assert quant_lab.problem_with_quantization(stub) == "implement `stub` first"
    assert quant_lab.problem_with_quantization(quant_params, stub) == "implement `stub` first"
    assert "pair" in quant_lab.problem_with_quantization(lambda *a: 0.1)
    assert quant_lab.problem_with_quantization(quant_params, fake_quantize) is None


def test_quantize_weight_per_channel_uses_one_scale_per_row():
    w = np.array([[0.1, -0.2, 0.05], [4.0, -2.0, 1.0]])
    wq, scales, mask = quant_lab.quantize_weight(w, 4, quant_params, fake_quantize,
                                                 per_channel=True, symmetric=True)
    np.testing.assert_allclose(scales[:, 0], [0.2 / 7.5, 4.0 / 7.5])
    assert (np.abs(wq - w) <= scales / 2 + 1e-12).all() | (~mask).any()
    wq_t, scales_t, _ = quant_lab.quantize_weight(w, 4, quant_params, fake_quantize,
                                                  per_channel=False, symmetric=True)
    assert np.unique(scales_t).size == 1
    assert np.abs(wq_t[0] - w[0]).max() > np.abs(wq[0] - w[0]).max()  # row 0's small step


def test_error_vs_bits_follows_s_over_sqrt_12():
    w = np.random.default_rng(6).normal(size=(16, 64))
    curves = quant_lab.error_vs_bits(w, quant_params, fake_quantize, bits=(4, 6, 8))
    assert list(curves) == [label for label, _, _ in quant_lab.MODES]
    for curve in curves.values():
        np.testing.assert_allclose(curve.rmse / curve.predicted, 1.0, atol=0.1)
        assert curve.rmse[0] / curve.rmse[2] == pytest.approx(16, rel=0.2)  # 2 bits: 4x smaller


def test_ptq_and_qat(base, digits):
    table = quant_lab.ptq_accuracy(base, digits, quant_params, fake_quantize, bits=(8, 2))
    assert set(table) == {"per-tensor", "per-channel"}
    assert abs(table["per-tensor"][8] - base.test_accuracy) < 0.02
    run = quant_lab.qat_run(base, digits, quant_params, fake_quantize, bits=2, steps=6,
                            eval_every=3)
    assert run.steps.tolist() == [0, 3, 6]
    assert run.test_accuracy[0] == pytest.approx(table["per-tensor"][2])  # step 0: PTQ
    assert run.float_accuracy == base.test_accuracy


def test_the_straight_through_function_masks_the_gradient():
    w = torch.tensor([[0.1, -2.9, 0.4, 3.0]], requires_grad=True)
    out = quant_lab._FakeQuantize.apply(w, 2, False, True, quant_params, fake_quantize)
    out.backward(torch.ones_like(out))
    _, _, mask = quant_lab.quantize_weight(w.detach().double().numpy(), 2, quant_params,
                                           fake_quantize, per_channel=False, symmetric=True)
    np.testing.assert_array_equal(w.grad.numpy(), mask.astype(np.float32))
    assert mask.tolist() == [[True, True, True, False]]  # 3.0 / s = 1.5 rounds to 2 > qmax = 1


# --- distill_lab ----------------------------------------------------------------------------------
def test_problem_with_distillation():
    assert distill_lab.problem_with_distillation(stub) == "implement `stub` first"
    assert "pair" in distill_lab.problem_with_distillation(lambda *a: 1.0)
    assert distill_lab.problem_with_distillation(distillation_loss) is None


def test_labelled_subset_is_balanced(digits):
    idx = distill_lab.labelled_subset(digits.y_train, 3, seed=1)
    assert np.bincount(digits.y_train[idx]).tolist() == [3] * 10
    np.testing.assert_array_equal(idx, distill_lab.labelled_subset(digits.y_train, 3, seed=1))


def test_distillation_experiment_calls_the_learners_loss(base, digits):
    calls = []

    def spy(s, t, y, T, alpha):
        calls.append((s.shape, T, alpha))
        return distillation_loss(s, t, y, T, alpha)

    result = distill_lab.distillation_experiment(spy, base, digits, per_class=2,
                                                 student_sizes=(64, 8, 10), steps=4,
                                                 batch_size=16, eval_every=2)
    assert list(result.student_accuracy) == ["cross-entropy, few labels", "distilled, with T²",
                                             "distilled, without T²", "cross-entropy, all labels"]
    assert result.steps.tolist() == [0, 2, 4] and result.n_labelled == 20
    with_t2 = calls[:8]  # 4 steps, one labelled and one unlabelled call each
    assert [c[2] for c in with_t2] == [0.5, 1.0] * 4 and with_t2[0][0] == (20, 10)
    without_t2 = calls[8:]
    assert [c[2] for c in without_t2] == [1.0, 0.0, 1.0] * 4
    np.testing.assert_array_equal(result.curves["cross-entropy, few labels"][0],
                                  result.curves["distilled, with T²"][0])  # same initial weights


# --- plots and the explorer -----------------------------------------------------------------------
def test_plots_draw_their_data(base, digits):
    fig, axes = plotting.new_figure(2, 4, figsize=(18, 7))
    sweep = pruning_lab.sparsity_sweep(base, digits, [0.5], magnitude_fn=magnitude_prune_mask,
                                       structured_fn=structured_prune_mask, finetune_steps=1)
    compression_plots.plot_sparsity_sweep(axes[0, 0], sweep)
    assert len(axes[0, 0].lines) == 6
    runs = pruning_lab.regrowth_experiment(base, digits, magnitude_prune_mask, steps=2)
    compression_plots.plot_regrowth(axes[0, 1], runs)
    assert len(axes[0, 1].lines) == 4
    storage = pruning_lab.storage_sweep(magnitude_prune_mask, [0.0, 0.9], shape=(16, 16),
                                        batch=4, repeat=3)
    compression_plots.plot_storage(axes[0, 2], axes[0, 3], storage)
    assert axes[0, 3].get_yscale() == "log"
    w = np.random.default_rng(7).normal(size=(8, 16))
    curves = quant_lab.error_vs_bits(w, quant_params, fake_quantize, bits=(2, 4))
    compression_plots.plot_error_vs_bits(axes[1, 0], curves, selected="per-tensor, affine",
                                         marker_bits=4)
    wq, _, _ = quant_lab.quantize_weight(w, 2, quant_params, fake_quantize, per_channel=False,
                                         symmetric=True)
    compression_plots.plot_quantized_weights(axes[1, 1], w, wq, levels=np.unique(wq))
    ptq = {"per-tensor": {8: 0.9, 2: 0.5}, "per-channel": {8: 0.9, 2: 0.8}}
    compression_plots.plot_ptq(axes[1, 2], ptq, 0.95)
    assert len(axes[1, 2].patches) == 4
    result = distill_lab.DistillationResult(0.97, {"a": 0.5}, {"a": np.array([0.1, 0.5])},
                                            np.array([0, 1]))
    compression_plots.plot_distillation(axes[1, 3], result)
    plotting.figure_png(fig)


def test_quantization_explorer_redraws_and_reports_stubs():
    w = np.random.default_rng(8).normal(size=(8, 16))
    explorer = compression_plots.QuantizationExplorer(w, quant_params, fake_quantize, bits=3)
    assert explorer.redraw_count == 1 and explorer.messages == []
    assert "3 bits, per-tensor, symmetric" in explorer.figure.axes[0].get_title()
    explorer.granularity.value = "per-channel"
    explorer.scheme.value = "affine"
    assert explorer.redraw_count == 3
    assert "per-channel, affine" in explorer.figure.axes[0].get_title()
    assert explorer.image.value[:4] == b"\x89PNG"
    stubbed = compression_plots.QuantizationExplorer(w, stub, stub)
    assert stubbed.messages == ["implement `stub` first"]
    given = compression_plots.QuantizationExplorer(w, quant_params, fake_quantize,
                                                   "implement `x` first")
    assert given.messages == ["implement `x` first"]
