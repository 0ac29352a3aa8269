"""Lesson 08 (PyTorch from NumPy): the notebook's structure, its checks, and its student copy.

Fast tests run the notebook's code cells in this process (experiments excluded): every check
passes with the instructor's solution, every classic mistake listed in a check is caught and
named from the public scenarios alone, and the solutions agree with torch beyond the scenarios
(random hyperparameters, seeds, groups). The student copy's checks and experiments are run with
its stubs. GPU variants run the same comparisons on CUDA, against torch on the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import re
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from dlopt import torch_drivers
from dlopt.check import CheckFailed, Exercise, compare
from dlopt.torch_variants import TorchBatchNorm, TorchFunction

ROOT = Path(__file__).resolve().parents[1]
LESSON = "08_pytorch_from_numpy"
NOTEBOOK = ROOT / "solutions" / LESSON / f"{LESSON}.ipynb"
GRADED = ["hessian_vector_product", "Sigmoid", "ReLU", "BatchNormFunction", "BatchNorm1d",
          "Dropout", "SGD", "RMSprop", "Adam", "AdamW", "ForeachAdam"]
OPTIMIZERS = ["SGD", "RMSprop", "Adam", "AdamW"]
MISTAKE_PREFIX = "This matches a classic mistake: "
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _read():
    return nbformat.read(NOTEBOOK, as_version=4)


def _nbgrader(cell) -> dict:
    return cell.metadata["nbgrader"]


def _is_experiment(cell) -> bool:
    return "experiment" in cell.metadata.get("tags", [])


def _run_cells(nb, *, experiments=False) -> dict:
    """Execute the notebook's code cells in one namespace (experiments only if asked)."""
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and (experiments or not _is_experiment(cell)):
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(cell.source, f"<cell {_nbgrader(cell)['grade_id']}>", "exec"),
                     namespace)
    return namespace


@pytest.fixture(scope="module")
def solved() -> dict:
    return _run_cells(_read())


@pytest.fixture(scope="module")
def exercises(solved) -> dict[str, Exercise]:
    return {obj.function: obj for obj in solved.values() if isinstance(obj, Exercise)}


def _public_only(exercise: Exercise) -> Exercise:
    public = copy.copy(exercise)
    public.hidden_cases = []
    return public


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
            begins = cell.source.count("### BEGIN SOLUTION")
            assert begins == cell.source.count("### END SOLUTION") >= 1
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
    assert ("colab.research.google.com/github/dlopt-course/deep-learning-optimization/blob/main/"
            f"course/{LESSON}/{LESSON}.ipynb") in title
    assert ("mybinder.org/v2/gh/dlopt-course/deep-learning-optimization/main?urlpath=lab/tree/"
            f"course/{LESSON}/{LESSON}.ipynb") in title
    setup = cells[2].source
    assert "rng = np.random.default_rng(0)" in setup and "device = best_device()" in setup
    assert cells[-1].cell_type == "markdown" and "Summary" in cells[-1].source
    for cell in cells[3:]:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*(import|from)\s+\w", cell.source, re.M), \
                f"import outside the setup cell: {_nbgrader(cell)['grade_id']}"


def test_each_graded_item_has_a_derivation_a_stub_and_a_check(exercises):
    cells = _read().cells
    assert sorted(exercises) == sorted(GRADED)
    for name in GRADED:
        stub = [i for i, c in enumerate(cells) if _nbgrader(c)["solution"]
                and re.search(rf"^(def|class) {name}\(", c.source, re.M)]
        assert len(stub) == 1, name
        before = "\n".join(c.source for c in cells[:stub[0]] if c.cell_type == "markdown")
        assert re.search(rf"You will implement [`\w, ]*`{name}`", before), \
            f"no derivation introduces {name}"
        after = cells[stub[0] + 1]
        assert _nbgrader(after)["grade"] and f".check({name})" in after.source, name


def test_misconceptions_and_conventions_are_stated():
    text = " ".join("\n".join(c.source for c in _read().cells if c.cell_type == "markdown").split())
    for phrase in ("ReLU's gradient is 1", "momentum normalizes", "RMSprop sums the mean",
                   "Adam adds the mean and the variance", "unscaled dropout",
                   "dropout still active at evaluation", "without $\\gamma$ and $\\beta$",
                   "batch norm without running statistics", "added after the update",
                   "**unbiased** batch variance", "`p` read as the probability to *keep*",
                   "incremented *after*", "after the square root and the bias correction",
                   "create_graph=True", "torch.cuda.synchronize()"):
        assert phrase in text, phrase


def test_gpu_cells_explain_themselves_without_a_gpu():
    cells = {_nbgrader(c)["grade_id"]: c.source for c in _read().cells}
    for grade_id in ("experiment_gpu_matmul", "experiment_gpu_training"):
        assert 'if device == "cpu":' in cells[grade_id] and "On a GPU" in cells[grade_id]


# --- the checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GRADED)
def test_solution_passes_every_scenario(solved, exercises, name):
    exercises[name].check(solved[name])  # raises CheckFailed on any failing scenario
    assert len(exercises[name].cases) >= 2
    assert len(exercises[name].hidden_cases) >= 3
    assert len(exercises[name].mistakes) >= 3


@pytest.mark.parametrize("name", GRADED)
def test_every_mistake_is_caught_and_named_from_public_scenarios(exercises, name):
    public = _public_only(exercises[name])
    for mistake in public.mistakes:
        with pytest.raises(CheckFailed) as failure, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            public.check(mistake.fn)
        assert MISTAKE_PREFIX + mistake.message in str(failure.value), (
            f"{name}: mistake not named: {mistake.message}\n{failure.value}")


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_checks_cover_the_contract(exercises, name):
    """Two groups, a state_dict round trip, a closure and the constructor, in public scenarios."""
    cases = exercises[name].cases
    assert any(c.kwargs.get("group_overrides", {}).get("lr") for c in cases)
    assert any(c.kwargs.get("reload_at") for c in cases)
    assert any(c.kwargs.get("defaults") and c.kwargs.get("invalid") for c in cases)
    assert all(c.kwargs.get("steps", 50) in (0, 50) for c in cases + exercises[name].hidden_cases)


# --- the solutions beyond the scenarios --------------------------------------------------------
def _agree(actual, expected, rtol=1e-7, atol=1e-10):
    problem = compare(actual, expected, rtol, atol)
    assert not problem, problem


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("seed", [3, 4])
def test_optimizers_follow_torch_with_random_hyperparameters(solved, name, seed):
    rng = np.random.default_rng(seed)
    hyper = {"lr": float(rng.uniform(1e-3, 3e-2)), "weight_decay": float(rng.choice([0.0, 0.05])),
             "maximize": bool(rng.integers(2))}
    group = {"lr": float(rng.uniform(1e-3, 3e-2))}
    if name == "SGD":
        hyper.update(momentum=float(rng.uniform(0.1, 0.95)), nesterov=True)
        group["momentum"] = 0.5
    elif name == "RMSprop":
        hyper.update(alpha=float(rng.uniform(0.8, 0.999)), momentum=0.3, centered=True)
        group["centered"] = False
    else:
        hyper.update(betas=(float(rng.uniform(0.5, 0.95)), 0.99), amsgrad=bool(rng.integers(2)))
        group["betas"] = (0.8, 0.9)
    for kwargs in ({}, {"reload_at": 17, "closure": True},
                   {"reload_at": 9, "handoff": "to_torch", "twin": name},
                   {"reload_at": 33, "handoff": "from_torch", "twin": name}):
        args = (hyper,)
        opts = {"seed": seed, "group_overrides": group, **kwargs}
        _agree(torch_drivers.run_optimizer(solved[name], *args, **opts),
               torch_drivers.run_optimizer(getattr(torch.optim, name), *args, **opts))


def test_foreach_adam_equals_your_adam_and_uses_foreach(solved):
    hyper = {"lr": 0.02, "weight_decay": 0.01, "amsgrad": True, "maximize": True}
    opts = {"seed": 5, "group_overrides": {"lr": 0.004}, "reload_at": 20, "count_foreach": True}
    foreach = torch_drivers.run_optimizer(solved["ForeachAdam"], hyper, **opts)
    loop = torch_drivers.run_optimizer(solved["Adam"], hyper, **opts)
    assert foreach.pop("uses_torch_foreach") and not loop.pop("uses_torch_foreach")
    _agree(foreach, loop)


def test_adamw_is_decoupled_adam(solved):
    opts = {"seed": 6, "reload_at": 10}
    _agree(torch_drivers.run_optimizer(solved["AdamW"], {"lr": 0.01, "weight_decay": 0.3}, **opts),
           torch_drivers.run_optimizer(solved["Adam"], {"lr": 0.01, "weight_decay": 0.3,
                                                        "decoupled_weight_decay": True}, **opts))


def test_functions_and_modules_agree_with_torch_on_random_inputs(solved):
    rng = np.random.default_rng(7)
    x, dy = rng.normal(0, 3, size=(6, 5, 4)), rng.normal(size=(6, 5, 4))
    x[0, 0, :2] = 0.0
    for name, fn in (("Sigmoid", torch.sigmoid), ("ReLU", torch.relu)):
        _agree(torch_drivers.run_function(solved[name], x, dy),
               torch_drivers.run_function(TorchFunction(fn), x, dy), rtol=1e-9, atol=1e-12)
    args = (rng.normal(1, 4, size=(20, 6)), rng.normal(size=6), rng.normal(size=6),
            rng.normal(size=(20, 6)))
    _agree(torch_drivers.run_batch_norm_function(solved["BatchNormFunction"], *args, eps=1e-2),
           torch_drivers.run_batch_norm_function(TorchBatchNorm, *args, eps=1e-2))
    opts = {"seed": 8, "batch_size": 12, "train_batches": 4,
            "hyperparameters": {"momentum": 0.05, "eps": 1e-4}}
    _agree(torch_drivers.run_batch_norm_module(solved["BatchNorm1d"], 7, **opts),
           torch_drivers.run_batch_norm_module(torch.nn.BatchNorm1d, 7, **opts))
    _agree(torch_drivers.run_dropout(solved["Dropout"], 0.4, seed=9, invalid=(-1.0, 3.0)),
           torch_drivers.run_dropout(torch.nn.Dropout, 0.4, seed=9, invalid=(-1.0, 3.0)),
           rtol=0.0, atol=0.02)


def test_hessian_vector_product_matches_the_quadratic_bowl(solved):
    from dlopt import torch_objectives

    v = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(solved["hessian_vector_product"](torch_objectives.quadratic,
                                                                np.zeros(3), v), v)


def test_learners_modules_move_with_the_model(solved):
    bn = solved["BatchNorm1d"](3).double()
    assert bn.running_var.dtype == torch.float64 and bn.num_batches_tracked.dtype == torch.long
    assert set(bn.state_dict()) == set(torch.nn.BatchNorm1d(3).state_dict())


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
    stubs = sum(c.source.count("### BEGIN SOLUTION") for c in _read().cells
                if _nbgrader(c)["solution"])
    assert stubs == 19 and code.count("raise NotImplementedError") == stubs


def test_student_copy_checks_say_not_implemented_and_experiments_say_what_is_missing():
    namespace: dict = {}
    raised, printed = [], {}
    for cell in _student_copy().cells:
        if cell.cell_type != "code":
            continue
        grade_id = _nbgrader(cell)["grade_id"]
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(cell.source, "<student cell>", "exec"), namespace)
        except NotImplementedError as exc:
            assert _nbgrader(cell)["grade"], f"only check cells may stop: {grade_id}"
            assert "is not implemented yet" in str(exc)
            raised.append(grade_id)
        printed[grade_id] = out.getvalue()
    graded = [_nbgrader(c)["grade_id"] for c in _read().cells if _nbgrader(c)["grade"]]
    assert raised == graded
    for grade_id in ("experiment_gradcheck_activations", "experiment_gradcheck_batch_norm",
                     "experiment_state_dict", "experiment_foreach_timing", "experiment_training"):
        assert "implement `" in printed[grade_id], (grade_id, printed[grade_id])


# --- on a GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("name", OPTIMIZERS + ["ForeachAdam"])
def test_optimizers_on_cuda_match_torch_on_the_cpu(solved, name):
    reference = (functools.partial(torch.optim.Adam, foreach=True) if name == "ForeachAdam"
                 else getattr(torch.optim, name))
    hyper = {"lr": 0.01, "weight_decay": 0.01}
    opts = {"seed": 10, "group_overrides": {"lr": 0.003}, "reload_at": 25}
    _agree(torch_drivers.run_optimizer(solved[name], hyper, device="cuda", **opts),
           torch_drivers.run_optimizer(reference, hyper, **opts), rtol=1e-6, atol=1e-9)


@pytest.mark.gpu
@cuda
def test_functions_and_modules_on_cuda_match_torch_on_the_cpu(solved):
    rng = np.random.default_rng(11)
    x, dy = rng.normal(0, 3, size=(5, 4)), rng.normal(size=(5, 4))
    for name, fn in (("Sigmoid", torch.sigmoid), ("ReLU", torch.relu)):
        _agree(torch_drivers.run_function(solved[name], x, dy, device="cuda"),
               torch_drivers.run_function(TorchFunction(fn), x, dy), rtol=1e-9, atol=1e-12)
    args = (x, rng.normal(size=4), rng.normal(size=4), dy)
    _agree(torch_drivers.run_batch_norm_function(solved["BatchNormFunction"], *args, device="cuda"),
           torch_drivers.run_batch_norm_function(TorchBatchNorm, *args))
    _agree(torch_drivers.run_batch_norm_module(solved["BatchNorm1d"], 4, device="cuda"),
           torch_drivers.run_batch_norm_module(torch.nn.BatchNorm1d, 4))
    _agree(torch_drivers.run_dropout(solved["Dropout"], 0.3, device="cuda"),
           torch_drivers.run_dropout(torch.nn.Dropout, 0.3), rtol=0.0, atol=0.02)


@pytest.mark.gpu
@cuda
def test_training_runs_on_cuda(solved):
    from dlopt import torch_lab

    run = torch_lab.train_digits(solved["ReLU"], solved["BatchNorm1d"], solved["Dropout"],
                                 solved["Adam"], device="cuda", epochs=3)
    assert run.device == "cuda" and run.test_accuracy[-1] > 0.8
