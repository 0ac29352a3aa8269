"""Lesson 04 (adaptive optimizers, schedules): what this lesson alone states and computes.

The contract every lesson keeps (structure, checks, student copy, notebook runs) is tested in
test_lesson_contract.py. Here: the graded functions are the expected ones, the misconceptions and
conventions are stated, the hidden scenarios name every mistake too, the solutions agree with
torch.optim and torch's schedulers beyond the scenarios, and the experiments' helpers are run
with the solutions.
"""

from __future__ import annotations

import copy
import re

import lesson_harness as harness
import numpy as np
import pytest
from lesson_harness import MISTAKE_PREFIX

from dlopt.grading.drivers.update_rule import run_update_rule
from dlopt.kit import objectives
from dlopt.kit.torch_bridge import torch_update_rule
from dlopt.lessons.l04_adaptive_optimizers import adaptive_lab
from dlopt_instructor import schedules

LESSON = "04_adaptive_optimizers"
RULES = ["adagrad_step", "rmsprop_step", "adam_step", "adamw_step"]
SCHEDULES = ["step_lr", "exponential_lr", "inverse_time_lr", "cosine_lr", "warmup_lr",
             "warmup_cosine_lr"]
GRADED = RULES + SCHEDULES
TORCH_NAME = {"adagrad_step": "Adagrad", "rmsprop_step": "RMSprop", "adam_step": "Adam",
              "adamw_step": "AdamW"}
solved, exercises = harness.solved, harness.exercises  # fixtures, for LESSON


# --- what this lesson states --------------------------------------------------------------------
test_graded_functions_are_the_expected_ones = harness.graded_functions_test(LESSON, GRADED)


def test_misconceptions_and_conventions_are_stated():
    text = harness.markdown(LESSON)
    assert "Adam adds the mean and the variance" in text
    assert "RMSprop sums the gradients" in text
    for convention in ("incremented **before**", "added **after** the square root",
                       "initial_accumulator_value", "(step - 1) * lr_decay", "no bias correction",
                       "L2 penalty added to the gradient", "weight_decay=1e-2",
                       "**scaled by `lr`**", r"\mathbb E[m_t]", "StepLR", "CosineAnnealingLR",
                       "LinearLR"):
        assert convention in text, convention


def test_update_rule_stubs_state_the_interface():
    sources = harness.cell_sources(LESSON)
    for name in RULES:
        source = sources[name]
        assert re.search(rf"^def {name}\(w, dw, state, \*,", source, re.M), name
        assert "Not modified" in source and "Empty on the first call" in source, name


# --- the checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GRADED)
def test_hidden_scenarios_also_name_every_mistake(exercises, name):
    """The grader tells the mistakes apart on the hidden scenarios alone, too."""
    hidden = copy.copy(exercises[name])
    hidden.cases, hidden.hidden_cases = list(exercises[name].hidden_cases), []
    for mistake in hidden.mistakes:
        message = harness.failure(hidden, mistake.fn)
        assert MISTAKE_PREFIX + mistake.message in message, mistake.message


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

    assert "changed w in place" in harness.failure(exercises["adam_step"], in_place, quiet=False)


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
    ("step_lr", schedules.step_lr_torch, {"lr0": 0.4, "step_size": 13, "gamma": 0.6}),
    ("exponential_lr", schedules.exponential_lr_torch, {"lr0": 0.4, "gamma": 0.985}),
    ("cosine_lr", schedules.cosine_lr_torch,
     {"lr0": 0.4, "total_steps": 150, "lr_min": 0.003}),
    ("warmup_lr", schedules.warmup_lr_torch, {"lr0": 0.4, "warmup_steps": 17}),
    ("warmup_cosine_lr", schedules.warmup_cosine_lr_torch,
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
    np.testing.assert_allclose(schedules.step_lr_torch(t, lr0=0.1, step_size=7, gamma=0.5),
                               0.1 * 0.5 ** (t // 7), rtol=1e-12)
    np.testing.assert_allclose(schedules.cosine_lr_torch(t, lr0=0.1, total_steps=60,
                                                                lr_min=0.01),
                               0.01 + 0.09 * (1 + np.cos(np.pi * t / 60)) / 2, rtol=1e-12)
    warm = schedules.warmup_cosine_lr_torch(t, lr0=0.1, warmup_steps=10, total_steps=60)
    np.testing.assert_allclose(warm[:11], 0.1 * t[:11] / 10, atol=1e-12)
    np.testing.assert_allclose(warm[10:], 0.05 * (1 + np.cos(np.pi * (t[10:] - 10) / 50)),
                               rtol=1e-12, atol=1e-15)
    assert isinstance(schedules.exponential_lr_torch(3, lr0=1.0, gamma=0.5), float)


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
    from dlopt.kit.data import load_digits_split

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


# --- the executed notebook ------------------------------------------------------------------------
@pytest.mark.slow
def test_solved_notebook_does_not_diverge_and_draws_its_widgets():
    nb = harness.executed_solution(LESSON)
    assert "diverged" not in harness.printed_text(nb).replace("sgd diverged", "")
    harness.assert_draws_a_figure(nb, "experiment_schedule_explorer", "experiment_race")


def test_all_schedules_text_agrees_with_the_shown_settings():
    """md_all_schedules: step decay (0.5 every 50) is at or above exponential (0.98) at every
    one of the 201 steps; exponential ends about five times lower than inverse time."""
    steps = np.arange(201)
    step_decay = 0.1 * 0.5 ** (steps // 50)
    exponential = 0.1 * 0.98**steps
    inverse_time = 0.1 / (1 + 0.05 * steps)
    assert np.all(step_decay >= exponential)
    assert round(0.5 ** (1 / 50), 3) == 0.986
    assert round(inverse_time[-1] / exponential[-1]) == 5
    text = " ".join(harness.markdown(LESSON).split())
    assert "staircase *above* the exponential curve" in text
    assert "$0.5^{1/50} = 0.986$ per step" in text and "all 201 steps" in text
    assert "ends five times lower than inverse time" in text


# --- torch's schedulers are recursive; AMSGrad (issue 14, item 11) -------------------------------
def test_recursive_schedulers_experiment_quotes_what_torch_does(solved):
    """md_schedules and md_recursive_schedulers: torch's ExponentialLR carries on from a rate set
    from outside (0.19 of the closed form afterwards), StepLR and ExponentialLR on one optimizer
    multiply, and without interference torch equals the closed form."""
    from dlopt.lessons.l04_adaptive_optimizers import torch_schedulers

    traces = torch_schedulers.chained_vs_closed_form(solved["step_lr"], solved["exponential_lr"])
    np.testing.assert_allclose(traces["ExponentialLR"], traces["closed form"], rtol=1e-12)
    drift = traces["ExponentialLR, lr set from outside"][6:] / traces["closed form"][6:]
    np.testing.assert_allclose(drift, 0.01 / (0.1 * 0.9**6), rtol=1e-9)
    assert round(drift[0], 2) == 0.19
    np.testing.assert_allclose(traces["StepLR and ExponentialLR"],
                               traces["product of closed forms"], rtol=1e-12)
    text = " ".join(harness.markdown(LESSON).split())
    for phrase in ("**torch computes them recursively.**", "**Schedulers chain.**",
                   "**They drift when the rate is changed from outside.**",
                   "a factor $0.01/(0.1\\cdot0.9^6) \\approx 0.19$ below the closed form"):
        assert phrase in text, phrase


def test_amsgrad_text_matches_reddi_et_al_example():
    """md_amsgrad: on x in [-1, 1] with the loss 1010 x at one step in 101 and -10 x otherwise
    (minimizer -1), torch's Adam (betas 0.9, 0.99, lr 0.1, projected) settles near x = 0.7 and
    AMSGrad heads for -1."""
    import torch

    def run(amsgrad, periods=20):
        x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([x], lr=0.1, betas=(0.9, 0.99), amsgrad=amsgrad)
        xs = []
        for t in range(1, 101 * periods + 1):
            opt.zero_grad()
            ((1010.0 if t % 101 == 1 else -10.0) * x).sum().backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(-1.0, 1.0)
            xs.append(x.item())
        return np.array(xs)

    adam, amsgrad = run(False), run(True)
    assert round(adam[-101:].mean(), 1) == 0.7
    assert amsgrad[-101:].mean() < -0.3 and amsgrad[-101:].mean() < amsgrad[-505:-404].mean()
    text = " ".join(harness.markdown(LESSON).split())
    assert "settles near $x=0.7$, on the wrong side" in text
    assert "`max_exp_avg_sq`; you will write it in lesson 08" in text
