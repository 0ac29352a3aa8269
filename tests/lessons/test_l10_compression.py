"""Lesson 10 (model compression): what this lesson alone states and computes.

The contract every lesson keeps (structure, checks, student copy, notebook runs) is tested in
test_contract.py. Here: the graded functions are the expected ones, the misconceptions (pruning
the largest weights; quantization as round(w * 2**b) with no scale, zero point or clamp) and
torch's conventions are stated, other correct implementations pass (another tie-break, other
roundings of the same numbers), the misconceptions written as a learner would write them are
named, the solutions agree with torch beyond the scenarios, and the student copy's experiments
say what to implement.
"""

from __future__ import annotations

import lesson_harness as harness
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lesson_harness import MISTAKE_PREFIX
from torch.ao.quantization import MinMaxObserver
from torch.nn.utils import prune

from dlopt.grading import Exercise

LESSON = "10_compression"
GRADED = ["magnitude_prune_mask", "structured_prune_mask", "quant_params", "fake_quantize",
          "distillation_loss"]
solved = harness.solved  # a fixture: the solved notebook's namespace, for LESSON


@pytest.fixture(scope="module")
def exercises() -> dict[str, Exercise]:
    """The check cells' exercises by variable name (magnitude_prune_mask has two)."""
    return harness.exercises_by_variable(LESSON)


# --- what this lesson states --------------------------------------------------------------------
test_graded_functions_are_the_expected_ones = harness.graded_functions_test(LESSON, GRADED)


def test_misconceptions_are_stated():
    text = harness.markdown(LESSON)
    assert '**Misconception: "prune the largest weights".**' in text
    assert "The mask keeps the **large** weights" in text
    assert '**Misconception: "quantization is `round(w * 2**b)`".**' in text
    for missing in ("scale fitted to the data", "integer zero\n  point",
                    "clamp to the integer range"):
        assert missing in text, missing
    assert "Misconceptions corrected." in text


def test_torchs_conventions_are_stated():
    text = harness.markdown(LESSON)
    assert "`round(amount * w.size)`" in text and "**Python's `round`**" in text
    assert "$(q_\\min + q_\\max)\\,/\\!/\\,2 = 127$" in text  # the unsigned symmetric zero point
    assert "$\\max|x| / 127.5$" in text and "$\\max|x|/127$" in text
    assert "round half to even" in text and "straight-through estimator" in text
    assert 'reduction="batchmean"' in text and "$T^2$" in text
    assert "weight_orig * weight_mask" in text


def test_docstrings_state_the_conventions(solved):
    conventions = {
        "magnitude_prune_mask": ("KEPT", "round(amount * w.size)", "Python's round", "not int()",
                                 "whole tensor (not row by row)", "torch.topk", "ValueError"),
        "structured_prune_mask": ("ln_structured(n=2, dim=dim)", "every OTHER axis",
                                  "round(amount * w.shape[dim])", "negative counts from the end"),
        "quant_params": ("torch's convention", "127.5", "max|x| / 127", "(qmin + qmax) // 2",
                         "float32's eps", "clamped to [qmin, qmax]", "min(x.min(), 0)"),
        "fake_quantize": ("round half to even", "rounded, unclamped",
                          "fake_quantize_per_channel_affine",
                          "(clip(q, qmin, qmax) - zero_point) * scale"),
        "distillation_loss": ('reduction="batchmean"', "T**2", "BOTH logits",
                              "teacher\n        first",
                              "alpha * T * (softmax(s / T) - softmax(t / T)) / N"),
    }
    for name, phrases in conventions.items():
        doc = solved[name].__doc__
        for phrase in phrases:
            assert phrase in doc, (name, phrase)


# --- other correct implementations pass ----------------------------------------------------------
def magnitude_reverse_ties(w, amount):
    """Correct, with the opposite tie-break: among equal |w|, the LAST entries are pruned first."""
    if not 0.0 <= amount <= 1.0:
        raise ValueError("amount must be in [0, 1]")
    a = np.abs(w).ravel()
    k = round(amount * a.size)
    order = np.lexsort((-np.arange(a.size), a))  # by |w|, then later indices first
    keep = np.ones(a.size, dtype=bool)
    keep[order[:k]] = False
    return keep.reshape(np.shape(w))


def magnitude_by_torch_topk(w, amount):
    """Correct, through torch.topk, returning 0/1 integers instead of booleans."""
    if not 0.0 <= amount <= 1.0:
        raise ValueError("amount must be in [0, 1]")
    t = torch.from_numpy(np.abs(w)).reshape(-1)
    keep = torch.ones(t.numel(), dtype=torch.int64)
    k = round(amount * t.numel())
    if k:
        keep[torch.topk(t, k, largest=False).indices] = 0
    return keep.reshape(np.shape(w)).numpy()


@pytest.mark.parametrize("fn", [magnitude_reverse_ties, magnitude_by_torch_topk],
                         ids=["other tie-break", "torch.topk, 0/1 ints"])
def test_other_correct_pruning_passes_both_checks(exercises, fn):
    harness.check_quietly(exercises["magnitude_checks"], fn)
    harness.check_quietly(exercises["tie_checks"], fn)


def test_other_correct_quantization_passes(exercises):
    def quant_params_by_observer_formulas(x, qmin, qmax, symmetric=False):
        lo, hi = np.minimum(np.min(x), 0.0), np.maximum(np.max(x), 0.0)
        eps = 2.0**-23
        if symmetric:
            zero_point = 0 if qmin < 0 else (qmin + qmax) // 2
            return max(max(-lo, hi) * 2 / (qmax - qmin), eps), zero_point
        scale = max((hi - lo) / (qmax - qmin), eps)
        return scale, int(np.clip(qmin - np.rint(lo / scale), qmin, qmax))

    def fake_quantize_with_rint(x, scale, zero_point, qmin, qmax, axis=None):
        s, z = np.asarray(scale, dtype=float), np.asarray(zero_point)
        if axis is not None:
            s = np.expand_dims(s, [i for i in range(x.ndim) if i != axis % x.ndim])
            z = np.expand_dims(z, [i for i in range(x.ndim) if i != axis % x.ndim])
        q = np.rint(x / s) + z
        return s * (np.minimum(np.maximum(q, qmin), qmax) - z), (qmin <= q) & (q <= qmax)

    harness.check_quietly(exercises["quant_params_checks"], quant_params_by_observer_formulas)
    harness.check_quietly(exercises["fake_quantize_checks"], fake_quantize_with_rint)


# --- the misconceptions, as a learner writes them, are named ------------------------------------
def reversed_threshold(w, amount):
    """The misconception: keep = |w| < threshold (the largest weights pruned)."""
    if not 0.0 <= amount <= 1.0:
        raise ValueError("amount must be in [0, 1]")
    k = round(amount * np.size(w))
    threshold = np.sort(np.abs(w), axis=None)[::-1][k - 1] if k else np.inf
    return np.abs(w) < threshold


def naive_quantization(x, scale, zero_point, qmin, qmax, axis=None):
    """The misconception in fake_quantize: round(x / s) * s, no zero point, no clamp."""
    s = np.asarray(scale, dtype=float)
    if axis is not None:
        s = np.expand_dims(s, [i for i in range(np.ndim(x)) if i != axis % np.ndim(x)])
    return np.round(x / s) * s, np.ones(np.shape(x), dtype=bool)


def test_pruning_the_largest_weights_is_named(exercises):
    message = harness.public_failure(exercises["magnitude_checks"], reversed_threshold)
    assert MISTAKE_PREFIX + "the condition is reversed" in message, message


def test_a_strict_threshold_is_named_on_ties(exercises):
    def threshold(w, amount):
        if not 0.0 <= amount <= 1.0:
            raise ValueError("amount must be in [0, 1]")
        k = round(amount * np.size(w))
        return np.abs(w) > np.sort(np.abs(w), axis=None)[k - 1] if k else np.ones(np.shape(w), bool)

    harness.check_quietly(exercises["magnitude_checks"], threshold)  # no ties: right
    message = harness.public_failure(exercises["tie_checks"], threshold)
    assert MISTAKE_PREFIX + "a threshold with `>`" in message, message


def test_quantization_without_scale_zero_point_or_clamp_is_named(exercises):
    def round_times_power_of_two(x, qmin, qmax, symmetric=False):
        bits = int(np.log2(qmax - qmin + 1))
        return 2.0**-bits, 0  # round(w * 2**b): a fixed step, no zero point

    message = harness.public_failure(exercises["quant_params_checks"], round_times_power_of_two)
    assert MISTAKE_PREFIX + "a fixed step 2**-b and no zero point" in message, message
    message = harness.public_failure(exercises["fake_quantize_checks"], naive_quantization)
    named = MISTAKE_PREFIX + "round(x / scale) * scale, with no zero point and no clamp"
    assert named in message, message


def test_a_symmetric_scale_divided_by_127_is_named(exercises):
    def by_127(x, qmin, qmax, symmetric=False):
        lo, hi = min(np.min(x), 0.0), max(np.max(x), 0.0)
        if symmetric:
            return max(-lo, hi) / qmax, 0 if qmin < 0 else (qmin + qmax) // 2
        scale = max((hi - lo) / qmax, 2.0**-23)
        return scale, int(np.clip(qmin - round(lo / scale), qmin, qmax))

    message = harness.public_failure(exercises["quant_params_checks"], by_127)
    assert MISTAKE_PREFIX + "divided by qmax" in message, message


def test_distillation_with_mean_reduction_through_torch_is_named(exercises):
    def with_torch_mean(s, t, y, T, alpha):
        st = torch.tensor(s, requires_grad=True)
        with pytest.warns(UserWarning, match="reduction: 'mean'"):
            kd = F.kl_div(F.log_softmax(st / T, 1), F.softmax(torch.tensor(t) / T, 1),
                          reduction="mean") * T**2
        loss = alpha * kd + (1 - alpha) * F.cross_entropy(st, torch.tensor(y))
        loss.backward()
        return float(loss.detach()), st.grad.numpy()

    message = harness.public_failure(exercises["distillation_loss_checks"], with_torch_mean)
    assert MISTAKE_PREFIX + "reduction='mean'" in message, message


# --- the solutions agree with torch beyond the scenarios ----------------------------------------
def test_pruning_solutions_match_torch_on_random_layers(solved):
    rng = np.random.default_rng(11)
    for _ in range(20):
        layer = torch.nn.Linear(int(rng.integers(2, 30)), int(rng.integers(2, 30))).double()
        amount = float(rng.uniform())
        w = layer.weight.detach().numpy().copy()
        prune.l1_unstructured(layer, "weight", amount)
        np.testing.assert_array_equal(solved["magnitude_prune_mask"](w, amount),
                                      layer.weight_mask.numpy() == 1)
        conv = torch.nn.Conv2d(3, int(rng.integers(2, 9)), 3).double()
        dim = int(rng.integers(-4, 4))
        w = conv.weight.detach().numpy().copy()
        prune.ln_structured(conv, "weight", amount, n=2, dim=dim)
        np.testing.assert_array_equal(solved["structured_prune_mask"](w, amount, dim),
                                      conv.weight_mask.numpy() == 1)


@pytest.mark.parametrize("qscheme", [torch.per_tensor_affine, torch.per_tensor_symmetric])
@pytest.mark.parametrize("dtype,qmin,qmax", [(torch.quint8, 0, 255), (torch.qint8, -128, 127),
                                             (torch.qint8, -8, 7), (torch.quint8, 0, 15)])
def test_quant_params_matches_the_observer(solved, qscheme, dtype, qmin, qmax):
    rng = np.random.default_rng(12)
    for shift in (-2.0, 0.0, 3.0):
        x = rng.normal(size=100) + shift
        observer = MinMaxObserver(dtype=dtype, qscheme=qscheme, quant_min=qmin, quant_max=qmax)
        observer(torch.tensor(x))
        scale, zero_point = observer.calculate_qparams()
        mine = solved["quant_params"](x, qmin, qmax, qscheme == torch.per_tensor_symmetric)
        assert mine[0] == pytest.approx(float(scale), rel=1e-6) and mine[1] == int(zero_point)
        assert type(mine[0]) is float and type(mine[1]) is int


def test_fake_quantize_matches_torch_away_from_ties(solved):
    rng = np.random.default_rng(13)
    x = rng.normal(size=(6, 50))
    scale, zero_point = 0.0625, 3  # exact in float32: torch and NumPy divide alike
    t = torch.tensor(x, requires_grad=True)
    out = torch.fake_quantize_per_tensor_affine(t, scale, zero_point, -8, 7)
    out.sum().backward()
    mine, mask = solved["fake_quantize"](x, scale, zero_point, -8, 7)
    np.testing.assert_allclose(mine, out.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(mask, t.grad.numpy() == 1)
    assert mask.dtype == bool and not mask.all() and mask.any()


def test_distillation_loss_matches_torch_for_many_temperatures(solved):
    rng = np.random.default_rng(14)
    for T in (0.5, 1.0, 3.0, 10.0):
        s, t = rng.normal(size=(7, 4)) * 3, rng.normal(size=(7, 4)) * 3
        y = rng.integers(0, 4, size=7)
        st = torch.tensor(s, requires_grad=True)
        kd = F.kl_div(F.log_softmax(st / T, 1), F.softmax(torch.tensor(t) / T, 1),
                      reduction="batchmean") * T**2
        loss = 0.3 * kd + 0.7 * F.cross_entropy(st, torch.tensor(y))
        loss.backward()
        mine, grad = solved["distillation_loss"](s, t, y, T, 0.3)
        assert mine == pytest.approx(float(loss.detach()), rel=1e-12)
        np.testing.assert_allclose(grad, st.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_the_t_squared_keeps_the_soft_gradient_independent_of_t(solved):
    """Hinton's argument, measured: with T**2 the soft gradient tends to (s - t) / (N C)."""
    rng = np.random.default_rng(15)
    s, t = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    s, t = s - s.mean(1, keepdims=True), t - t.mean(1, keepdims=True)
    y = np.zeros(3, dtype=int)
    limit = (s - t) / (3 * 5)
    for T in (100.0, 1000.0):
        _, grad = solved["distillation_loss"](s, t, y, T, 1.0)
        np.testing.assert_allclose(grad, limit, rtol=0, atol=0.05 * np.abs(limit).max() * 100 / T)


# --- the student copy -----------------------------------------------------------------------------
def test_student_copy_experiments_say_what_to_implement():
    run = harness.run_student_copy(LESSON, experiments=True)
    assert run.raised == harness.check_cell_ids(LESSON)
    printed = "".join(run.printed.values())
    assert printed.count("implement `magnitude_prune_mask` first") == 3
    assert printed.count("implement `quant_params` first") == 3
    assert "implement `distillation_loss` first" in printed
    explorer = run.values["experiment_quant_explorer"]
    assert explorer.messages == ["implement `quant_params` first"]
    assert "dense 64-32-32-10 network: test accuracy" in run.printed["experiment_sparsity"]
