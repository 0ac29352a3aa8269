"""The schedule explorer and its helpers, headless, with stand-in schedules and update rules.

The schedules and the rule below are test doubles written for this file (torch's schedulers
stand in for the learner's schedules); none of them is shipped in ``dlopt``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from dlopt.kit.objectives import rosenbrock
from dlopt.kit.torch_bridge import torch_update_rule
from dlopt.lessons.l04_adaptive_optimizers import schedule_explorer as se
from dlopt_instructor.schedules import (
    cosine_lr_torch,
    exponential_lr_torch,
    step_lr_torch,
    warmup_cosine_lr_torch,
)

adam = torch_update_rule("Adam")


def cosine_lr(step, *, lr0, total_steps, lr_min=0.0):
    return cosine_lr_torch(step, lr0=lr0, total_steps=total_steps, lr_min=lr_min)


def step_lr(step, *, lr0, step_size, gamma=0.1):
    return step_lr_torch(step, lr0=lr0, step_size=step_size, gamma=gamma)


def exponential_lr(step, *, lr0, gamma):
    return exponential_lr_torch(step, lr0=lr0, gamma=gamma)


def warmup_cosine_lr(step, *, lr0, warmup_steps, total_steps, lr_min=0.0):
    return warmup_cosine_lr_torch(step, lr0=lr0, warmup_steps=warmup_steps,
                                  total_steps=total_steps, lr_min=lr_min)


def inverse_time_lr(step, *, lr0, alpha, beta):
    raise NotImplementedError("replace this line with your code")


def one_int_at_a_time(step, *, lr0, total_steps):
    if not isinstance(step, int):
        raise TypeError("only ints")
    return lr0 * (1 - step / total_steps)


def adam_step(w, dw, state, **hp):
    return adam(w, dw, state, **hp)


def unimplemented_rule(w, dw, state, *, lr):
    raise NotImplementedError("replace this line with your code")


SCHEDULES = {"cosine_lr": cosine_lr, "step_lr": step_lr, "exponential_lr": exponential_lr,
             "warmup_cosine_lr": warmup_cosine_lr, "inverse_time_lr": inverse_time_lr}


# --- computation -----------------------------------------------------------------------------
def test_schedule_parameters_come_from_the_signature():
    assert se.schedule_parameters(cosine_lr) == ["lr0", "total_steps", "lr_min"]
    assert se.schedule_parameters(step_lr) == ["lr0", "step_size", "gamma"]
    assert se.schedule_parameters(lambda step, lr0: lr0) == ["lr0"]
    assert se.schedule_parameters(len) == []


def test_schedule_values_vectorized_one_int_at_a_time_and_unimplemented():
    steps = np.arange(11)
    values, message = se.schedule_values(cosine_lr, steps, lr0=0.1, total_steps=10)
    assert message is None and values.shape == (11,) and values[0] == pytest.approx(0.1)
    values, message = se.schedule_values(one_int_at_a_time, steps, lr0=1.0, total_steps=10)
    assert message is None
    np.testing.assert_allclose(values, 1 - steps / 10)
    values, message = se.schedule_values(inverse_time_lr, steps, lr0=1.0, alpha=0.1, beta=1.0)
    assert values is None and message == "implement `inverse_time_lr` first"

    def broken(step, *, lr0):
        raise ValueError("oops")

    values, message = se.schedule_values(broken, steps, lr0=1.0)
    assert values is None and message == "`broken` raised ValueError: oops"


def test_schedule_run_reports_unimplemented_and_divergent_rules():
    lrs = np.full(50, 0.1)
    losses, message = se.schedule_run(adam_step, lrs, noise=0.5)
    assert message is None and losses.shape == (51,) and losses[-1] < losses[0]
    again, _ = se.schedule_run(adam_step, lrs, noise=0.5)
    np.testing.assert_array_equal(losses, again)  # same seed, same noise
    losses, message = se.schedule_run(unimplemented_rule, lrs)
    assert losses is None and message == "implement `unimplemented_rule` first"

    def exploding(w, dw, state, *, lr):
        return w * 1e200, state

    losses, message = se.schedule_run(exploding, lrs)
    assert message == "exploding diverged at step 2" and losses.shape == (2,)
    losses, _ = se.schedule_run(adam_step, lrs, objective=rosenbrock, start=(-1.2, 1.0))
    assert losses[0] == pytest.approx(24.2)


# --- the widget ------------------------------------------------------------------------------
def _lines(ax) -> dict[str, np.ndarray]:
    return {line.get_label().split(":")[0]: line.get_ydata() for line in ax.lines}


def test_explorer_draws_curve_and_runs_and_redraws_on_change():
    widget = se.ScheduleExplorer(SCHEDULES, adam_step, lr0=0.2, total_steps=100)
    assert widget.redraw_count == 1 and widget.messages == []
    ax_lr, ax_loss = widget.figure.axes
    curves = _lines(ax_lr)
    np.testing.assert_allclose(curves["cosine_lr"], cosine_lr(np.arange(101), lr0=0.2,
                                                             total_steps=100))
    assert set(_lines(ax_loss)) == {"constant lr0", "cosine_lr"}
    assert widget.image.value[:4] == b"\x89PNG"
    before = widget.image.value

    widget.sliders["lr0"].value = 0.05
    assert widget.redraw_count == 2 and widget.image.value != before
    assert _lines(widget.figure.axes[0])["cosine_lr"][0] == pytest.approx(0.05)

    widget.sliders["total_steps"].value = 60
    assert len(_lines(widget.figure.axes[0])["cosine_lr"]) == 61
    assert len(widget.losses["cosine_lr"]) == 61


def test_explorer_shows_only_the_chosen_schedules_sliders_and_its_gamma():
    widget = se.ScheduleExplorer(SCHEDULES, adam_step)
    shown = {n for n, s in widget.sliders.items() if s.layout.display != "none"}
    assert shown == {"lr0", "total_steps", "lr_min"}
    widget.schedule.value = "exponential_lr"
    assert widget.redraw_count == 2  # one redraw, although gamma changed too
    assert widget.sliders["gamma"].value == pytest.approx(0.98)
    shown = {n for n, s in widget.sliders.items() if s.layout.display != "none"}
    assert shown == {"lr0", "total_steps", "gamma"}
    widget.schedule.value = "step_lr"
    assert widget.sliders["gamma"].value == pytest.approx(0.5)
    assert widget.parameters() == {"lr0": widget.sliders["lr0"].value, "step_size": 50,
                                   "gamma": 0.5}
    widget.sliders["step_size"].value = 25
    values = _lines(widget.figure.axes[0])["step_lr"]
    assert values[24] == pytest.approx(values[0]) and values[25] == pytest.approx(values[0] / 2)


def test_explorer_survives_unimplemented_schedules_and_rules():
    widget = se.ScheduleExplorer(SCHEDULES, adam_step)
    widget.schedule.value = "inverse_time_lr"
    assert widget.messages == ["implement `inverse_time_lr` first"]
    assert widget.values is None and set(widget.losses) == {"constant lr0"}
    assert "implement `inverse_time_lr` first" in widget.message.value
    assert "implement" in widget._repr_mimebundle_()["text/plain"]

    widget = se.ScheduleExplorer({"cosine_lr": cosine_lr}, unimplemented_rule)
    assert widget.messages == ["implement `unimplemented_rule` first"]
    assert widget.values is not None and widget.losses == {}

    widget = se.ScheduleExplorer({"cosine_lr": cosine_lr})  # no rule: the curve only
    assert widget.messages == [] and widget.losses == {}


def test_explorer_reports_parameters_it_has_no_slider_for():
    def odd(step, *, lr0, power):
        return lr0 * step**power

    widget = se.ScheduleExplorer({"odd": odd}, adam_step)
    assert widget.messages == ["no slider for `power` (parameter of `odd`)"]
    with pytest.raises(TypeError, match="no slider"):
        se.ScheduleExplorer({"odd": odd}, power=2)
    with pytest.raises(ValueError):
        se.ScheduleExplorer({})


def test_explorer_redraws_fast_and_shows_a_static_image():
    widget = se.ScheduleExplorer(SCHEDULES, adam_step, total_steps=200)
    times = []
    for value in (0.1, 0.05, 0.02):
        start = time.perf_counter()
        widget.sliders["lr0"].value = value
        times.append(time.perf_counter() - start)
    # well under 250 ms on a laptop; generous here because test machines are shared
    assert min(times) < 1.0, times
    bundle = widget._repr_mimebundle_()
    assert "image/png" in bundle
