"""Lesson 06 (batch norm): the notebook's structure, its checks, and its student copy.

Fast tests run the notebook's code cells in this process (experiments excluded): every check
passes with the instructor's solution, every classic mistake listed in a check is caught and
named from the public scenarios alone, mistakes written the way a learner writes them in NumPy
are named too, and the solutions agree with torch beyond the scenarios. Slow tests execute the
solved and the student notebook in a kernel.
"""

from __future__ import annotations

import copy
import re
import time
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from dlopt.bn_oracles import torch_batchnorm_backward, torch_batchnorm_forward
from dlopt.check import CheckFailed, Exercise, call, judge

ROOT = Path(__file__).resolve().parents[1]
LESSON = "06_batch_norm"
NOTEBOOK = ROOT / "solutions" / LESSON / f"{LESSON}.ipynb"
GRADED = ["batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt"]
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
    assert "colab.research.google.com/github/dlopt-course/deep-learning-optimization/blob/main/" \
           f"course/{LESSON}/{LESSON}.ipynb" in title
    assert "mybinder.org/v2/gh/dlopt-course/deep-learning-optimization/main?urlpath=lab/tree/" \
           f"course/{LESSON}/{LESSON}.ipynb" in title
    assert "rng = np.random.default_rng(0)" in cells[2].source
    assert cells[-1].cell_type == "markdown" and "Summary" in cells[-1].source
    for cell in cells[3:]:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*(import|from)\s+\w", cell.source, re.M), \
                f"import outside the setup cell: {_nbgrader(cell)['grade_id']}"


def test_each_graded_function_has_a_derivation_a_stub_and_a_check(exercises):
    cells = _read().cells
    assert sorted(exercises) == sorted(GRADED)
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
    assert "batch norm reduces memory" in text and "adds" in text
    assert "Why $\\gamma$ and $\\beta$?" in text and "identity" in text
    assert "batch of one" in text and "running statistics" in text
    assert "unbiased" in text and "weight of the new batch" in text


def test_dlopt_modules_hold_no_answer():
    """No lesson-06 function is defined in dlopt (experiments take the learner's functions)."""
    for path in (ROOT / "src" / "dlopt").glob("*.py"):
        text = path.read_text()
        for name in GRADED:
            assert not re.search(rf"^def {name}\(", text, re.M), f"{path.name} defines {name}"


def test_the_gradient_check_helper_is_given_not_in_dlopt():
    import dlopt

    cells = {_nbgrader(c)["grade_id"]: c for c in _read().cells}
    helper = cells["numerical_gradient"]
    assert not _nbgrader(helper)["solution"] and _nbgrader(helper)["locked"]
    package = Path(dlopt.__file__).parent
    for module in package.glob("*.py"):
        assert "def numerical_gradient" not in module.read_text(), module.name


# --- the checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GRADED)
def test_solution_passes_every_scenario(solved, exercises, name):
    exercises[name].check(solved[name])  # raises CheckFailed on any failing scenario
    assert len(exercises[name].cases) >= 3
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


@pytest.mark.parametrize("name", GRADED)
def test_unimplemented_function_is_reported_as_such(exercises, name):
    def stub(*args, **kwargs):
        raise NotImplementedError("replace this line with your code")

    with pytest.raises(NotImplementedError, match="is not implemented yet"):
        exercises[name].check(stub)


# --- mistakes as a learner writes them, in NumPy -------------------------------------------------
def _forward(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5, bug=""):
    """The forward pass with one deliberate bug (or none)."""
    n, d = x.shape
    if "running_mean" not in state:
        state["running_mean"] = np.zeros(d)
    if "running_var" not in state:
        state["running_var"] = np.ones(d)
    if bug == "no_eps":
        eps = 0.0

    def normalize(centred, var):
        if bug == "eps_outside_sqrt":
            return centred / (np.sqrt(var) + eps)
        return centred / np.sqrt(var + eps)

    def scale(x_hat):
        return x_hat if bug == "no_gamma_beta" else gamma * x_hat + beta

    if not train and bug not in ("eval_batch_statistics", "ignores_train_flag"):
        return scale(normalize(x - state["running_mean"], state["running_var"])), None
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc ** 2).mean(axis=0)
    x_hat = normalize(xc, var)
    if train or bug == "ignores_train_flag":
        m = 1 - momentum if bug == "momentum_reversed" else momentum
        new_var = var if bug == "biased_running_var" else var * n / (n - 1)
        running_mean = (1 - m) * state["running_mean"] + m * mu
        running_var = (1 - m) * state["running_var"] + m * new_var
        if bug != "running_not_stored":
            state["running_mean"], state["running_var"] = running_mean, running_var
    cache = {"x_hat": x_hat, "xc": xc, "var": var, "inv_std": 1 / np.sqrt(var + eps),
             "gamma": gamma, "eps": eps}
    return scale(x_hat), (cache if train else None)


def _backward(dout, cache, *, bug=""):
    """The graph backward pass with one deliberate bug (or none)."""
    x_hat, xc, var, inv_std, gamma, eps = (cache[k] for k in
                                           ("x_hat", "xc", "var", "inv_std", "gamma", "eps"))
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = dout * x_hat if bug == "dgamma_not_summed" else (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    dxc = dx_hat * inv_std
    if bug not in ("no_variance_path", "statistics_constant"):
        dvar = -0.5 * (var + eps) ** -1.5 * (dx_hat * xc).sum(axis=0)
        dxc = dxc + (2.0 / (n - 1 if bug == "bessel_in_backward" else n)) * xc * dvar
    dx = dxc
    if bug not in ("no_mean_path", "statistics_constant"):
        dx = dxc - dxc.sum(axis=0) / n
    return dx, dgamma, dbeta


FORWARD_BUGS = {
    "biased_running_var": "the running variance averaged the biased batch variance",
    "momentum_reversed": "momentum is the weight of the NEW batch",
    "eval_batch_statistics": "evaluation mode normalized with the batch's own mean",
    "ignores_train_flag": "train=False was ignored",
    "running_not_stored": "the running statistics never changed",
    "eps_outside_sqrt": "eps was added outside the square root",
    "no_eps": "eps is missing",
    "no_gamma_beta": "returned x_hat without gamma and beta",
}
BACKWARD_BUGS = {
    "no_mean_path": ("path through the batch mean", "the term - sum(dx_hat) is missing"),
    "no_variance_path": ("path through the batch variance",
                         "x_hat * sum(dx_hat * x_hat) is missing"),
    "statistics_constant": ("treats the batch mean and variance as constants",) * 2,
    "bessel_in_backward": ("differentiated as sum / (N - 1)",) * 2,
    "dgamma_not_summed": ("dgamma was not summed over the batch",) * 2,
}


def _named(exercise, fn) -> str:
    with pytest.raises(CheckFailed) as failure, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _public_only(exercise).check(fn)
    return str(failure.value)


def _mistakes_named(exercise, fn) -> list[str]:
    """The mistake named for each failing scenario, public and hidden ('' when none)."""
    data = exercise.collect(exercise.reference)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        verdict = judge(data, [call(fn, case, driver=exercise.driver)
                               for case, _ in exercise._all_cases()])
    return [(c.label, c.hidden, c.mistake) for c in verdict.cases if not c.passed]


def test_numpy_forward_with_no_bug_passes(exercises):
    exercises["batchnorm_forward"].check(_forward)


@pytest.mark.parametrize("bug", FORWARD_BUGS)
def test_numpy_forward_bugs_are_named(exercises, bug):
    def forward(x, gamma, beta, state, *, train=True, momentum=0.1, eps=1e-5):
        return _forward(x, gamma, beta, state, train=train, momentum=momentum, eps=eps, bug=bug)

    message = _named(exercises["batchnorm_forward"], forward)
    assert MISTAKE_PREFIX + FORWARD_BUGS[bug] in message, message
    named = _mistakes_named(exercises["batchnorm_forward"], forward)
    # public scenarios name this very mistake; a hidden one may match an equivalent one (with
    # momentum=1, "running statistics not stored" and "momentum reversed" give the same output)
    unnamed = [label for label, hidden, mistake in named
               if not (mistake.startswith(FORWARD_BUGS[bug]) or (hidden and mistake))]
    assert named and not unnamed, f"{bug}: failing scenarios without its name: {unnamed}"


@pytest.mark.parametrize("name", ["batchnorm_backward", "batchnorm_backward_alt"])
@pytest.mark.parametrize("bug", BACKWARD_BUGS)
def test_numpy_backward_bugs_are_named(exercises, name, bug):
    exercises[name].check(_backward)

    def backward(dout, cache):
        return _backward(dout, cache, bug=bug)

    message = _named(exercises[name], backward)
    expected = BACKWARD_BUGS[bug][name == "batchnorm_backward_alt"]
    assert MISTAKE_PREFIX in message and expected in message, message
    named = _mistakes_named(exercises[name], backward)
    unnamed = [label for label, _, mistake in named if expected not in mistake]
    assert named and not unnamed, f"{bug}: failing scenarios without its name: {unnamed}"


def test_forward_that_writes_into_x_is_flagged(exercises):
    def forward(x, gamma, beta, state, **kwargs):
        out, cache = _forward(x, gamma, beta, state, **kwargs)
        x -= 1.0
        return out, cache

    message = _named(exercises["batchnorm_forward"], forward)
    assert "changed its input (argument 1) in place" in message


def test_forward_with_a_cache_of_its_own_is_told_the_keys(exercises):
    def forward(x, gamma, beta, state, **kwargs):
        out, cache = _forward(x, gamma, beta, state, **kwargs)
        return out, (None if cache is None else (cache["x_hat"], cache["gamma"]))

    assert "cache dict with exactly the keys" in _named(exercises["batchnorm_forward"], forward)


# --- the solutions beyond the scenarios --------------------------------------------------------
@pytest.mark.parametrize("n,d,momentum", [(2, 3, 0.1), (50, 8, 0.25), (7, 1, 1.0)])
def test_solutions_match_torch_batchnorm1d_over_many_steps(solved, n, d, momentum):
    rng = np.random.default_rng(n * d)
    layer = torch.nn.BatchNorm1d(d, momentum=momentum, dtype=torch.float64)
    gamma, beta = rng.normal(size=d), rng.normal(size=d)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    state: dict = {}
    for _ in range(12):
        x = rng.normal(rng.normal(), rng.uniform(0.1, 5.0), size=(n, d))
        dout = rng.normal(size=(n, d))
        t = torch.from_numpy(x).requires_grad_()
        layer.train()
        layer.zero_grad()
        expected = layer(t)
        expected.backward(torch.from_numpy(dout))
        with np.errstate(all="raise"):
            out, cache = solved["batchnorm_forward"](x, gamma, beta, state, momentum=momentum)
        np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(state["running_mean"], layer.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(state["running_var"], layer.running_var.numpy(), rtol=1e-12)
        for backward in ("batchnorm_backward", "batchnorm_backward_alt"):
            dx, dgamma, dbeta = solved[backward](dout, cache)
            np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(dgamma, layer.weight.grad.numpy(), rtol=1e-10)
            np.testing.assert_allclose(dbeta, layer.bias.grad.numpy(), rtol=1e-10)
    layer.eval()
    x = rng.normal(size=(3, d))
    before = copy.deepcopy(state)
    out, cache = solved["batchnorm_forward"](x, gamma, beta, state, train=False)
    assert cache is None
    np.testing.assert_allclose(out, layer(torch.from_numpy(x)).detach().numpy(), rtol=1e-10)
    assert all(np.array_equal(before[k], state[k]) for k in before)


def test_torch_reference_is_torch_batchnorm1d():
    rng = np.random.default_rng(5)
    x, gamma, beta = rng.normal(size=(6, 3)), rng.normal(size=3), rng.normal(size=3)
    state: dict = {}
    out, cache = torch_batchnorm_forward(x, gamma, beta, state, momentum=0.2)
    layer = torch.nn.BatchNorm1d(3, momentum=0.2, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    t = torch.from_numpy(x).requires_grad_()
    expected = layer(t)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(state["running_var"], layer.running_var.numpy(), rtol=1e-12)
    dout = rng.normal(size=(6, 3))
    expected.backward(torch.from_numpy(dout))
    dx, dgamma, dbeta = torch_batchnorm_backward(dout, cache)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dgamma, layer.weight.grad.numpy(), rtol=1e-12)


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


def test_student_copy_checks_say_not_implemented():
    namespace: dict = {}
    raised = []
    for cell in _student_copy().cells:
        if cell.cell_type != "code" or _is_experiment(cell):
            continue
        try:
            exec(compile(cell.source, "<student cell>", "exec"), namespace)
        except NotImplementedError as exc:
            assert _nbgrader(cell)["grade"], "only check cells may stop"
            assert "is not implemented yet" in str(exc)
            raised.append(_nbgrader(cell)["grade_id"])
    graded = [_nbgrader(c)["grade_id"] for c in _read().cells if _nbgrader(c)["grade"]]
    assert raised == graded


# --- executing the notebooks -----------------------------------------------------------------
def _execute(nb, allow_errors=False):
    import nbclient

    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     allow_errors=allow_errors,
                                     resources={"metadata": {"path": str(ROOT)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


@pytest.mark.slow
def test_solved_notebook_runs_top_to_bottom_quickly():
    nb = _read()
    seconds = _execute(nb)
    assert seconds < 30, f"the solved notebook took {seconds:.1f} s"
    text = "\n".join(out.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for out in c.outputs)
    for name in GRADED:
        assert f"✓ {name}: all" in text
    assert "DISAGREES" not in text and "implement `" not in text
    explorer = next(c for c in nb.cells if _nbgrader(c)["grade_id"] == "experiment_explorer")
    assert "image/png" in explorer.outputs[0]["data"]


@pytest.mark.slow
def test_student_notebook_only_stops_at_unimplemented_functions():
    nb = _student_copy()
    _execute(nb, allow_errors=True)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        errors = [out for out in cell.outputs if out.output_type == "error"]
        if _nbgrader(cell)["grade"]:
            assert [e.ename for e in errors] == ["NotImplementedError"], _nbgrader(cell)["grade_id"]
        else:
            assert errors == [], (_nbgrader(cell)["grade_id"], errors)
        if _is_experiment(cell):
            shown = str(cell.outputs)
            assert "implement `" in shown, _nbgrader(cell)["grade_id"]
