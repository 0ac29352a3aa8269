"""Lesson 04 (adaptive optimizers, schedules): the notebook's structure, checks and student copy.

Fast tests run the notebook's code cells in this process (experiments excluded): every check
passes with the instructor's solution, every classic mistake is caught and named from the
public scenarios alone, and the solutions agree with torch.optim and torch's schedulers beyond
the scenarios. The experiments' helpers are run with the solutions. Slow tests execute the
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

from dlopt import adaptive_lab, objectives, schedule_oracles
from dlopt.check import CheckFailed, Exercise
from dlopt.drivers import run_update_rule
from dlopt.oracles import torch_update_rule

ROOT = Path(__file__).resolve().parents[1]
LESSON = "04_adaptive_optimizers"
NOTEBOOK = ROOT / "solutions" / LESSON / f"{LESSON}.ipynb"
RULES = ["adagrad_step", "rmsprop_step", "adam_step", "adamw_step"]
SCHEDULES = ["step_lr", "exponential_lr", "inverse_time_lr", "cosine_lr", "warmup_lr",
             "warmup_cosine_lr"]
GRADED = RULES + SCHEDULES
MISTAKE_PREFIX = "This matches a classic mistake: "
TORCH_NAME = {"adagrad_step": "Adagrad", "rmsprop_step": "RMSprop", "adam_step": "Adam",
              "adamw_step": "AdamW"}


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
        assert f"You will implement `{name}`" in before or f"`{name}`" in before, name
        after = cells[stub[0] + 1]
        assert _nbgrader(after)["grade"] and f".check({name})" in after.source, name


def test_misconceptions_and_conventions_are_stated():
    text = "\n".join(c.source for c in _read().cells if c.cell_type == "markdown")
    assert "Adam adds the mean and the variance" in text
    assert "RMSprop sums the gradients" in text
    for convention in ("incremented **before**", "added **after** the square root",
                       "initial_accumulator_value", "(step - 1) * lr_decay", "no bias correction",
                       "L2 penalty added to the gradient", "weight_decay=1e-2",
                       "**scaled by `lr`**", r"\mathbb E[m_t]", "StepLR", "CosineAnnealingLR",
                       "LinearLR"):
        assert convention in text, convention


def test_update_rule_stubs_state_the_interface():
    cells = _read().cells
    for name in RULES:
        source = next(c.source for c in cells if _nbgrader(c)["grade_id"] == name)
        assert re.search(rf"^def {name}\(w, dw, state, \*,", source, re.M), name
        assert "Not modified" in source and "Empty on the first call" in source, name


# --- the checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GRADED)
def test_solution_passes_every_scenario(solved, exercises, name):
    exercises[name].check(solved[name])  # raises CheckFailed on any failing scenario
    assert len(exercises[name].cases) >= 3
    assert len(exercises[name].hidden_cases) >= 2
    assert len(exercises[name].mistakes) >= 3


@pytest.mark.parametrize("name", GRADED)
def test_every_mistake_is_caught_and_named_from_public_scenarios(exercises, name):
    public = _public_only(exercises[name])
    for mistake in public.mistakes:
        # as in a notebook, where numpy's warnings (0/0, sqrt of a negative) are printed
        with pytest.raises(CheckFailed) as failure, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            public.check(mistake.fn)
        assert MISTAKE_PREFIX + mistake.message in str(failure.value), (
            f"{name}: mistake not named: {mistake.message}\n{failure.value}")


@pytest.mark.parametrize("name", GRADED)
def test_hidden_scenarios_also_name_every_mistake(exercises, name):
    """The grader tells the mistakes apart on the hidden scenarios alone, too."""
    hidden = copy.copy(exercises[name])
    hidden.cases, hidden.hidden_cases = list(exercises[name].hidden_cases), []
    for mistake in hidden.mistakes:
        with pytest.raises(CheckFailed) as failure, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hidden.check(mistake.fn)
        assert MISTAKE_PREFIX + mistake.message in str(failure.value), mistake.message


@pytest.mark.parametrize("name", GRADED)
def test_unimplemented_function_is_reported_as_such(exercises, name):
    def stub(*args, **kwargs):
        raise NotImplementedError("replace this line with your code")

    with pytest.raises(NotImplementedError, match="is not implemented yet"):
        exercises[name].check(stub)


@pytest.mark.parametrize("name", RULES)
def test_update_rule_scenarios_start_from_saved_state_and_non_defaults(exercises, name):
    cases = exercises[name].cases + exercises[name].hidden_cases
    saved = [c for c in cases if c.kwargs.get("state")]
    assert saved and all(c.kwargs["state"]["step"] > 1 for c in saved)
    assert any(set(c.kwargs) - {"state", "objective_kwargs", "lr"} for c in exercises[name].cases)
    assert exercises[name].rtol <= 1e-9


def test_rules_changing_w_in_place_are_refused(exercises):
    def in_place(w, dw, state, **hp):
        w -= 0.1 * dw
        return w, state

    with pytest.raises(CheckFailed, match="changed w in place"):
        exercises["adam_step"].check(in_place)


# --- the solutions beyond the scenarios --------------------------------------------------------
RULE_SETTINGS = {
    "adagrad_step": {"lr": 0.07, "lr_decay": 0.03, "weight_decay": 0.02,
                     "initial_accumulator_value": 0.2, "eps": 1e-7},
    "rmsprop_step": {"lr": 0.004, "alpha": 0.8, "eps": 1e-5, "weight_decay": 0.03},
    "adam_step": {"lr": 0.03, "betas": (0.7, 0.97), "eps": 1e-4, "weight_decay": 0.2},
    "adamw_step": {"lr": 0.03, "betas": (0.7, 0.97), "eps": 1e-4, "weight_decay": 0.3},
}


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("resume", [False, True])
def test_rules_agree_with_torch_optim_on_random_matrices(solved, name, resume):
    rng = np.random.default_rng(40)
    w0 = rng.normal(size=(4, 3))
    state = None
    if resume:  # a state saved by torch itself after 13 steps
        _, state = run_update_rule(torch_update_rule(TORCH_NAME[name]), w0, objectives.wavy_bowl,
                                   13, **RULE_SETTINGS[name])
    ours = run_update_rule(solved[name], w0, objectives.wavy_bowl, 60, state,
                           **RULE_SETTINGS[name])
    theirs = run_update_rule(torch_update_rule(TORCH_NAME[name]), w0, objectives.wavy_bowl, 60,
                             state, **RULE_SETTINGS[name])
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-10, atol=1e-13)
    assert ours[1].keys() == theirs[1].keys() and ours[1]["step"] == theirs[1]["step"]
    for key in theirs[1]:
        np.testing.assert_allclose(ours[1][key], theirs[1][key], rtol=1e-10, atol=1e-15)


SCHEDULE_SETTINGS = [
    ("step_lr", schedule_oracles.step_lr_torch, {"lr0": 0.4, "step_size": 13, "gamma": 0.6}),
    ("exponential_lr", schedule_oracles.exponential_lr_torch, {"lr0": 0.4, "gamma": 0.985}),
    ("cosine_lr", schedule_oracles.cosine_lr_torch,
     {"lr0": 0.4, "total_steps": 150, "lr_min": 0.003}),
    ("warmup_lr", schedule_oracles.warmup_lr_torch, {"lr0": 0.4, "warmup_steps": 17}),
    ("warmup_cosine_lr", schedule_oracles.warmup_cosine_lr_torch,
     {"lr0": 0.4, "warmup_steps": 17, "total_steps": 150, "lr_min": 0.003}),
]


@pytest.mark.parametrize("name,reference,params", SCHEDULE_SETTINGS,
                         ids=[s[0] for s in SCHEDULE_SETTINGS])
def test_schedules_agree_with_torch_schedulers(solved, name, reference, params):
    steps = np.arange(151)
    values = solved[name](steps, **params)
    np.testing.assert_allclose(values, reference(steps, **params), rtol=1e-10, atol=1e-11)
    scalar = solved[name](int(steps[40]), **params)
    assert np.ndim(scalar) == 0 and np.isclose(float(scalar), values[40])


def test_inverse_time_is_one_over_t_for_beta_one(solved):
    steps = np.arange(1, 50)
    values = solved["inverse_time_lr"](steps, lr0=1.0, alpha=1e6, beta=1.0)
    np.testing.assert_allclose(values * steps, 1e-6, rtol=1e-5)


def test_schedule_references_match_closed_forms():
    t = np.arange(61)
    np.testing.assert_allclose(schedule_oracles.step_lr_torch(t, lr0=0.1, step_size=7, gamma=0.5),
                               0.1 * 0.5 ** (t // 7), rtol=1e-12)
    np.testing.assert_allclose(schedule_oracles.cosine_lr_torch(t, lr0=0.1, total_steps=60,
                                                                lr_min=0.01),
                               0.01 + 0.09 * (1 + np.cos(np.pi * t / 60)) / 2, rtol=1e-12)
    warm = schedule_oracles.warmup_cosine_lr_torch(t, lr0=0.1, warmup_steps=10, total_steps=60)
    np.testing.assert_allclose(warm[:11], 0.1 * t[:11] / 10, atol=1e-12)
    np.testing.assert_allclose(warm[10:], 0.05 * (1 + np.cos(np.pi * (t[10:] - 10) / 50)),
                               rtol=1e-12, atol=1e-15)
    assert isinstance(schedule_oracles.exponential_lr_torch(3, lr0=1.0, gamma=0.5), float)


# --- the experiments' helpers, with the solutions -------------------------------------------------
def test_bias_correction_experiment_shows_the_documented_numbers(solved):
    result = adaptive_lab.bias_correction_steps(solved["adam_step"], 30, lr=1e-3)
    assert result.step_corrected[0] == pytest.approx(1.0, rel=1e-6)
    assert result.step_uncorrected[0] == pytest.approx(0.1 / np.sqrt(1e-3), rel=1e-4)
    assert 5.5 < result.step_uncorrected[9] / result.step_corrected[9] < 7.5
    t = result.t
    # the raw moments are the bias factors times (noisy) unbiased estimates
    assert 0.8 < np.mean(result.first_moment / (1 - 0.9**t)) < 1.2
    assert 0.7 < np.mean(result.second_moment / (1 - 0.999**t)) < 1.3
    assert result.second_moment[0] < 0.003


def test_decay_experiment_separates_adam_l2_and_adamw(solved):
    H, b = np.diag([4.0, 0.25]), np.array([2.0, 1.0])
    result = adaptive_lab.decay_comparison(solved["adam_step"], solved["adamw_step"], H, b,
                                           weight_decay=0.5, lr=0.03, steps=1500)
    np.testing.assert_allclose(result.l2_minimum, [2 / 4.5, 1 / 0.75], rtol=1e-6)
    np.testing.assert_allclose(result.box_minimum, [0.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(result.runs["Adam + L2"][-1], result.l2_minimum, atol=1e-3)
    assert np.linalg.norm(result.runs["AdamW"][-1] - result.l2_minimum) > 0.3


def test_accumulator_experiment_shows_adagrad_stalling(solved):
    runs, messages = adaptive_lab.accumulator_runs(
        {"Adagrad": (solved["adagrad_step"], "sum"), "RMSprop": (solved["rmsprop_step"],
                                                                 "square_avg")},
        objectives.rosenbrock, [-1.2, 1.0], lr=0.03, steps=1000)
    assert messages == []
    assert runs["Adagrad"].losses[-1] > 3.0 > 0.5 > runs["RMSprop"].losses[-1]
    assert runs["Adagrad"].effective_lr[-1].max() < 3e-4 < runs["RMSprop"].effective_lr[-1].min()


def test_schedule_beats_constant_rate_on_the_digits(solved):
    from dlopt.data import load_digits_split

    digits = load_digits_split(seed=0)
    steps = np.arange(300)
    schedule = solved["warmup_cosine_lr"](steps, lr0=0.03, warmup_steps=30, total_steps=300)
    constant = adaptive_lab.train_digits(solved["adam_step"], np.full(300, 0.03), digits)
    scheduled = adaptive_lab.train_digits(solved["adam_step"], schedule, digits)
    assert scheduled.train_loss < constant.train_loss / 3
    assert scheduled.losses.shape == (300,) and 0.9 < scheduled.test_accuracy <= 1.0


def test_experiment_helpers_report_unimplemented_rules():
    def adam_step(w, dw, state, **hp):
        raise NotImplementedError("replace this line with your code")

    result = adaptive_lab.decay_comparison(adam_step, adam_step, np.eye(2), np.ones(2),
                                           weight_decay=0.1, lr=0.01, steps=5)
    assert result.runs == {} and result.messages == [
        "Adam + L2: implement `adam_step` first", "AdamW: implement `adam_step` first"]
    runs, messages = adaptive_lab.accumulator_runs({"Adagrad": (adam_step, "sum")},
                                                   objectives.rosenbrock, [0.0, 0.0], lr=0.1,
                                                   steps=3)
    assert runs == {} and messages == ["Adagrad: implement `adam_step` first"]


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


WIDGETS = ("experiment_schedule_explorer", "experiment_race")


@pytest.mark.slow
def test_solved_notebook_runs_top_to_bottom_quickly():
    nb = _read()
    seconds = _execute(nb)
    assert seconds < 30, f"the solved notebook took {seconds:.1f} s"
    text = "\n".join(out.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for out in c.outputs)
    for name in GRADED:
        assert f"✓ {name}: all" in text
    assert "implement `" not in text and "diverged" not in text.replace("sgd diverged", "")
    for cell in nb.cells:
        if _nbgrader(cell)["grade_id"] in WIDGETS:
            assert "image/png" in cell.outputs[0]["data"]


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
