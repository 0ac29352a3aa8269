"""Lesson 07 (dropout): what this lesson alone states and computes.

The contract every lesson keeps (structure, checks, student copy, notebook runs) is tested in
test_lesson_contract.py. Here: the graded functions are the expected ones, the misconceptions and
conventions are stated, other correct implementations (other masks) pass the statistical check,
mistakes written with other random draws are still named there, the references agree with
torch's own dropout kernels, and the student copy's experiments say what to implement.
"""

from __future__ import annotations

import lesson_harness as harness
import numpy as np
import pytest
import torch
from lesson_harness import MISTAKE_PREFIX

from dlopt.grading import CheckFailed, Exercise
from dlopt.grading.drivers.dropout import dropout_statistics

LESSON = "07_dropout"
GRADED = ["dropout_forward", "dropout_backward"]
solved = harness.solved  # a fixture: the solved notebook's namespace, for LESSON


@pytest.fixture(scope="module")
def exercises() -> dict[str, Exercise]:
    """The check cells' exercises by variable name (dropout_forward has two)."""
    return harness.exercises_by_variable(LESSON)


# --- what this lesson states --------------------------------------------------------------------
test_graded_functions_are_the_expected_ones = harness.graded_functions_test(LESSON, GRADED)


def test_misconceptions_are_stated():
    text = harness.markdown(LESSON)
    assert "Bernoulli" in text and "inverted dropout" in text
    assert "`out = x * (1 - p)`" in text and "Gaussian" in text
    assert "**unscaled** dropout" in text and "**active at evaluation**" in text
    assert "probability that an entry\nis **dropped**" in text  # p is the drop probability
    assert r"\mathbb E[\text{out}_i]" in text  # the derivation of E[out] = x


def test_docstrings_state_the_conventions(solved):
    doc = solved["dropout_forward"].__doc__
    for convention in ("keep = rng.random(x.shape) >= p", "DROPPING", "p = 1 drops everything",
                       "``out`` is ``x`` itself", "(None, p)", "ValueError", "(keep, p)"):
        assert convention in doc, convention
    doc = solved["dropout_backward"].__doc__
    for convention in ("SAME mask", "p = 1", "dx = dout"):
        assert convention in doc, convention


# --- other correct implementations, and mistakes drawn another way ------------------------------
def _validate(p):
    if not 0.0 <= p <= 1.0:
        raise ValueError("p must be in [0, 1]")


def binomial_dropout(x, p, *, train=True, rng=None):
    _validate(p)
    if not train:
        return x.copy(), (None, p)
    keep = rng.binomial(1, 1.0 - p, size=x.shape).astype(bool)
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return x * keep * scale, (keep, p)


def below_dropout(x, p, *, train=True, rng=None):
    """Keeps where u < 1 - p: just as correct, but not the documented draw."""
    _validate(p)
    if not train:
        return x, (None, p)
    keep = rng.random(x.shape) < 1.0 - p
    return (np.where(keep, x / (1.0 - p), 0.0) if p < 1 else np.zeros_like(x)), (keep, p)


def torch_rng_dropout(x, p, *, train=True, rng=None):
    """Uniforms from a torch generator seeded by rng: another stream, equally correct."""
    _validate(p)
    if not train:
        return x, (None, p)
    gen = torch.Generator().manual_seed(int(rng.integers(1000)))
    keep = (torch.rand(x.shape, generator=gen, dtype=torch.float64) >= p).numpy()
    return (x * keep / (1.0 - p) if p < 1 else np.zeros_like(x)), (keep, p)


@pytest.mark.parametrize("fn", [binomial_dropout, below_dropout, torch_rng_dropout],
                         ids=["binomial", "below 1 - p", "torch.rand"])
def test_other_correct_masks_pass_the_statistical_check(exercises, fn):
    exercises["dropout_forward_checks"].check(fn)


def test_an_undocumented_draw_fails_the_seeded_check_by_name(exercises):
    with pytest.raises(CheckFailed, match="not the documented draw"):
        exercises["seeded_checks"].check(below_dropout)
    with pytest.raises(CheckFailed, match="not the documented draw"):
        exercises["seeded_checks"].check(binomial_dropout)


def _own_unscaled(x, p, *, train=True, rng=None):
    _validate(p)
    return (x * rng.binomial(1, 1 - p, x.shape) if train else x), None


def _own_keep_probability(x, p, *, train=True, rng=None):
    _validate(p)
    if not train:
        return x, None
    keep = rng.random(x.shape) < p
    return x * keep / p, None


def _own_active_at_eval(x, p, *, train=True, rng=None):
    _validate(p)
    keep = rng.binomial(1, 1 - p, x.shape)
    return (x * keep / (1 - p) if p < 1 else 0 * x), None


def _own_gaussian(x, p, *, train=True, rng=None):
    _validate(p)
    if not train:
        return x, None
    with np.errstate(all="ignore"):
        return x * rng.normal(1.0, np.sqrt(p / (1 - p)), x.shape), None


def _own_scaled_by_p(x, p, *, train=True, rng=None):
    _validate(p)
    if not train:
        return x, None
    keep = rng.binomial(1, 1 - p, x.shape)
    with np.errstate(all="ignore"):
        return x * keep / p, None


OWN_MISTAKES = [
    (_own_unscaled, "dropout not rescaled"),
    (_own_keep_probability, "p used as the keep probability"),
    (_own_active_at_eval, "dropout active at evaluation"),
    (_own_gaussian, "multiplicative Gaussian noise"),
    (_own_scaled_by_p, "scaled by 1/p instead of 1/(1 - p)"),
]


@pytest.mark.parametrize("fn,message", OWN_MISTAKES, ids=[m for _, m in OWN_MISTAKES])
def test_mistakes_with_other_draws_are_still_named(exercises, fn, message):
    """Statistics make the names independent of how the learner drew the mask."""
    named = harness.public_failure(exercises["dropout_forward_checks"], fn)
    assert MISTAKE_PREFIX + message in named, named


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_correct_statistics_are_reported_exactly_for_many_seeds(p):
    expected = {"fraction of zeros": p, "mean of out / x": 1.0,
                "every nonzero entry has that scale": True, "out == x everywhere": False,
                "x unchanged": True}
    for seed in range(12):
        stats = dropout_statistics(binomial_dropout, p, seed=100 + seed)
        scale = stats.pop("scale of the nonzero entries")
        assert stats == expected, (p, seed, stats)
        assert scale == pytest.approx(1 / (1 - p), rel=1e-9)


# --- the references are torch's dropout ----------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, 0.3, 0.8, 1.0])
def test_backward_reference_is_torch_autograd_through_native_dropout(solved, p):
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    out, mask = torch.ops.aten.native_dropout(x, p, True)
    g = torch.randn(4, 5, dtype=torch.float64)
    out.backward(g)
    reference = solved["torch_dropout_backward"](g.numpy(), (mask.numpy(), p))
    np.testing.assert_array_equal(reference, x.grad.numpy())
    mine = solved["dropout_backward"](g.numpy(), (mask.numpy(), p))
    np.testing.assert_allclose(mine, x.grad.numpy(), rtol=1e-15, atol=0)


@pytest.mark.parametrize("p", [0.0, 0.25, 0.9, 1.0])
def test_forward_on_a_mask_is_torch_native_dropout_arithmetic(solved, p):
    x = torch.randn(3, 7, dtype=torch.float64)
    out, mask = torch.ops.aten.native_dropout(x, p, True)
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    again = torch.ops.aten.native_dropout_backward(x, mask, scale)
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    ref_out, (keep, cached_p) = solved["torch_dropout_on_mask"](
        x.numpy(), p, rng=np.random.default_rng(3))
    assert keep.dtype == bool and cached_p == p
    np.testing.assert_array_equal(keep, np.random.default_rng(3).random((3, 7)) >= p)


def test_statistics_reference_reports_torchs_own_mask(solved):
    x = np.random.default_rng(2).normal(size=(50, 40))
    out, (kept, p) = solved["torch_dropout"](x, 0.4, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(kept, out != 0)
    np.testing.assert_allclose(out[kept], x[kept] / 0.6, rtol=1e-15)
    assert p == 0.4 and abs((~kept).mean() - 0.4) < 0.06
    same, _ = solved["torch_dropout"](x, 0.4, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(same, out)
    out, cache = solved["torch_dropout"](x, 0.4, train=False)
    assert cache == (None, 0.4) and np.array_equal(out, x)


# --- the student copy -----------------------------------------------------------------------------
def test_student_copy_experiments_say_what_to_implement():
    run = harness.run_student_copy(LESSON, experiments=True)
    assert run.raised == harness.check_cell_ids(LESSON)
    printed = "".join(run.printed.values())
    assert printed.count("implement `dropout_forward` first") >= 3
    explorer = run.namespace["dropout_plots"].OverfittingExplorer(None, "implement `x` first")
    assert explorer.messages == ["implement `x` first"]


def test_a_binomial_draw_is_named_as_such(exercises):
    """rng.binomial(1, 1 - p, shape) is NumPy's `random < 1 - p` when 1 - p > 0.5 and the
    documented `random >= p` otherwise: the check names the binomial draw, not its look-alike."""
    message = harness.failure(exercises["seeded_checks"], binomial_dropout)
    assert "rng.binomial(1, 1 - p, x.shape) is a valid Bernoulli(1 - p) mask" in message
    assert "keep = rng.random(x.shape) < 1 - p is a valid" not in message
    message = harness.failure(exercises["seeded_checks"], below_dropout)
    assert "keep = rng.random(x.shape) < 1 - p is a valid" in message
    assert "rng.binomial" not in message
