"""Lesson 07 (dropout): the notebook's structure, its checks, and its student copy.

Fast tests run the notebook's code cells in this process (experiments excluded): every check
passes with the instructor's solution, every classic mistake is caught and named from the
public scenarios alone, other correct implementations (other masks) pass the statistical
check, mistakes written with other random draws are still named there, and the references
agree with torch's own dropout kernels.
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from dlopt.check import CheckFailed, Exercise
from dlopt.dropout_checks import dropout_statistics

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "07_dropout" / "07_dropout.ipynb"
GRADED = ["dropout_forward", "dropout_backward"]
MISTAKE_PREFIX = "This matches a classic mistake: "


def _read():
    return nbformat.read(NOTEBOOK, as_version=4)


def _nbgrader(cell) -> dict:
    return cell.metadata["nbgrader"]


def _is_experiment(cell) -> bool:
    return "experiment" in cell.metadata.get("tags", [])


def _run_cells(nb) -> dict:
    """Execute the notebook's code cells, experiments excluded, in one namespace."""
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and not _is_experiment(cell):
            exec(compile(cell.source, f"<cell {_nbgrader(cell)['grade_id']}>", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def solved() -> dict:
    return _run_cells(_read())


@pytest.fixture(scope="module")
def exercises(solved) -> dict[str, Exercise]:
    """The check cells' exercises by variable name (dropout_forward has two)."""
    return {name: obj for name, obj in solved.items() if isinstance(obj, Exercise)}


def _public_only(exercise: Exercise) -> Exercise:
    public = copy.copy(exercise)
    public.hidden_cases = []
    return public


def _check_quietly(exercise: Exercise, fn) -> None:
    with warnings.catch_warnings():  # as in a notebook: numpy's warnings are printed, not raised
        warnings.simplefilter("ignore")
        exercise.check(fn)


# --- structure ---------------------------------------------------------------------------------
def test_cells_carry_nbgrader_metadata_and_no_outputs():
    nb = _read()
    assert nb.metadata["kernelspec"]["name"] == "python3"
    ids = [_nbgrader(c)["grade_id"] for c in nb.cells]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    for cell in nb.cells:
        meta = _nbgrader(cell)
        assert meta["schema_version"] == 3 and meta["task"] is False
        assert meta["locked"] is (not meta["solution"])
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, meta["grade_id"]
        if meta["solution"]:
            assert cell.source.count("### BEGIN SOLUTION") == cell.source.count(
                "### END SOLUTION") >= 1
            assert not meta["grade"]
        if meta["grade"]:
            assert meta["points"] in (1, 2) and not _is_experiment(cell)
            assert "### BEGIN HIDDEN TESTS" in cell.source and ".check(" in cell.source
            assert cell.source.startswith('"""`'), "a test cell opens with what it checks"
            assert "np.random.default_rng(" in cell.source, "hidden scenarios are seeded"


def test_cell_order_and_setup():
    cells = _read().cells
    assert [_nbgrader(c)["grade_id"] for c in cells[:3]] == ["title", "colab_setup", "setup"]
    title = cells[0].source
    assert "colab.research.google.com/github/dlopt-course/deep-learning-optimization/blob/main/" \
           "course/07_dropout/07_dropout.ipynb" in title
    assert "mybinder.org/v2/gh/dlopt-course/deep-learning-optimization/main?urlpath=lab/tree/" \
           "course/07_dropout/07_dropout.ipynb" in title
    assert "rng = np.random.default_rng(0)" in cells[2].source
    assert cells[-1].cell_type == "markdown" and "Summary" in cells[-1].source
    for cell in cells[3:]:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*(import|from)\s+\w", cell.source, re.M), \
                f"import outside the setup cell: {_nbgrader(cell)['grade_id']}"


def test_each_graded_function_has_a_derivation_a_stub_and_checks(exercises):
    cells = _read().cells
    assert sorted({e.function for e in exercises.values()}) == sorted(GRADED)
    for name in GRADED:
        stub = [i for i, c in enumerate(cells) if _nbgrader(c)["solution"]
                and re.search(rf"^def {name}\(", c.source, re.M)]
        assert len(stub) == 1, name
        before = "\n".join(c.source for c in cells[:stub[0]] if c.cell_type == "markdown")
        assert f"You will implement `{name}`" in before, f"no derivation introduces {name}"
        after = cells[stub[0] + 1]
        assert _nbgrader(after)["grade"] and f".check({name})" in after.source, name


def test_misconceptions_are_stated():
    text = "\n".join(c.source for c in _read().cells if c.cell_type == "markdown")
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


# --- the checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("variable", ["dropout_forward_checks", "seeded_checks",
                                      "dropout_backward_checks"])
def test_solution_passes_every_scenario(solved, exercises, variable):
    exercise = exercises[variable]
    exercise.check(solved[exercise.function])  # raises CheckFailed on any failing scenario
    assert len(exercise.cases) >= 3 and len(exercise.hidden_cases) >= 2
    assert len(exercise.mistakes) >= 3


@pytest.mark.parametrize("variable", ["dropout_forward_checks", "seeded_checks",
                                      "dropout_backward_checks"])
def test_every_mistake_is_caught_and_named_from_public_scenarios(exercises, variable):
    public = _public_only(exercises[variable])
    for mistake in public.mistakes:
        with pytest.raises(CheckFailed) as failure:
            _check_quietly(public, mistake.fn)
        assert MISTAKE_PREFIX + mistake.message in str(failure.value), (
            f"{variable}: mistake not named: {mistake.message}\n{failure.value}")


@pytest.mark.parametrize("variable", ["dropout_forward_checks", "seeded_checks",
                                      "dropout_backward_checks"])
def test_unimplemented_function_is_reported_as_such(exercises, variable):
    def stub(*args, **kwargs):
        raise NotImplementedError("replace this line with your code")

    with pytest.raises(NotImplementedError, match="is not implemented yet"):
        exercises[variable].check(stub)


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
    with pytest.raises(CheckFailed) as failure:
        _check_quietly(_public_only(exercises["dropout_forward_checks"]), fn)
    assert MISTAKE_PREFIX + message in str(failure.value), str(failure.value)


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


# --- the student copy ----------------------------------------------------------------------------
def _student_copy():
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    nb, resources = ClearSolutions().preprocess(_read(), {})
    nb, _ = ClearHiddenTests().preprocess(nb, resources)
    return nb


def test_student_copy_has_no_solutions_or_hidden_tests():
    nb = _student_copy()
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "BEGIN SOLUTION" not in code and "HIDDEN TESTS" not in code
    assert "hidden_rng" not in code
    assert code.count("raise NotImplementedError") == len(GRADED)


def test_student_copy_stops_only_at_checks_and_experiments_say_what_to_implement(capsys):
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {}
    raised = []
    for cell in _student_copy().cells:
        if cell.cell_type != "code":
            continue
        try:
            exec(compile(cell.source, "<student cell>", "exec"), namespace)
        except NotImplementedError as exc:
            assert _nbgrader(cell)["grade"], "only check cells may stop"
            assert "is not implemented yet" in str(exc)
            raised.append(_nbgrader(cell)["grade_id"])
    graded = [_nbgrader(c)["grade_id"] for c in _read().cells if _nbgrader(c)["grade"]]
    assert raised == graded
    printed = capsys.readouterr().out
    assert printed.count("implement `dropout_forward` first") >= 3
    explorer = namespace["dropout_plots"].OverfittingExplorer(None, "implement `x` first")
    assert explorer.messages == ["implement `x` first"]
