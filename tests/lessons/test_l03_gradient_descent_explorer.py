"""dlopt.kit.surfaces and dlopt.lessons.l03_gradient_descent.explorer: the 2-D objectives, the
runs, the plots, the widget.

The widget is tested headless: every control, changed once, redraws exactly once and changes
the plotted data; an unfinished rule (raising NotImplementedError) is named while the others
still draw; a diverging run is cut and reported. Timing is measured by
benchmarks/explorer_redraw.py, never asserted here.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from dlopt.kit import surfaces
from dlopt.lessons.l03_gradient_descent import explorer
from dlopt.lessons.l03_gradient_descent.explorer import ConvergenceExplorer


# --- update rules with the course's interface (written here, not in dlopt) -------------------
def gd(w, dw, state, *, lr=1e-3):
    return w - lr * dw, state


def heavy_ball(w, dw, state, *, lr=1e-3, momentum=0.0):
    old = state.get("momentum_buffer")
    buffer = dw.copy() if old is None else momentum * old + dw
    return w - lr * buffer, {"momentum_buffer": buffer}


def betas_rule(w, dw, state, *, lr=1e-3, betas=(0.9, 0.999)):
    """Not an optimizer anyone uses: a step whose size depends on both betas."""
    return w - lr * (betas[0] * dw + (1.0 - betas[1]) * 100.0 * np.sign(dw)), state


def anything(w, dw, state, **hyperparameters):
    return w - hyperparameters["lr"] * dw, state


def adam_step(w, dw, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    raise NotImplementedError("replace this line with your code")


def broken(w, dw, state, *, lr=1e-3):
    return w  # forgot the state


def nan_rule(w, dw, state, *, lr=1e-3):
    return w * np.nan, state


ALL = list(surfaces.default_surfaces().values())


# --- surfaces -----------------------------------------------------------------------------------
@pytest.mark.parametrize("surface", ALL, ids=lambda s: s.name)
def test_gradients_match_central_differences(surface):
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(*surface.xlim, 20), rng.uniform(*surface.ylim, 20)])
    h = 1e-6
    numerical = np.stack([(surface.f(points + h * e) - surface.f(points - h * e)) / (2 * h)
                          for e in np.eye(2)], axis=-1)
    analytic = surface.grad(points)
    assert analytic.shape == points.shape
    np.testing.assert_allclose(analytic, numerical, rtol=1e-6, atol=1e-5 * np.abs(analytic).max())
    assert np.shape(surface.f(points[0])) == () and surface.grad(points[0]).shape == (2,)


@pytest.mark.parametrize("surface", ALL, ids=lambda s: s.name)
def test_view_start_floor_and_levels(surface):
    (x0, x1), (y0, y1) = surface.xlim, surface.ylim
    assert x0 <= surface.start[0] <= x1 and y0 <= surface.start[1] <= y1
    X, Y, Z = surface.grid(40)
    assert X.shape == Y.shape == Z.shape == (40, 40)
    assert surface.grid(40)[2] is Z  # cached, computed once
    assert Z.min() >= surface.floor - 1e-12
    if surface.minimum is not None:
        np.testing.assert_allclose(surface.f(np.array(surface.minimum)), surface.floor, atol=1e-12)
        np.testing.assert_allclose(surface.grad(np.array(surface.minimum)), 0.0, atol=1e-12)
    levels = surface.levels(12, 40)
    assert levels.shape == (12,) and np.all(np.diff(levels) > 0)
    assert surface.f(np.array(surface.start)) > surface.floor


def test_quadratic_has_the_condition_number_asked_for():
    for kappa in (1.0, 10.0, 400.0):
        for angle in (0.0, 0.7):
            H = surfaces.quadratic_surface(kappa, angle=angle).f.H
            np.testing.assert_allclose(np.linalg.eigvalsh(H), [1.0 / kappa, 1.0], rtol=1e-12)
    assert surfaces.quadratic_surface(25).name == "quadratic (κ = 25)"
    with pytest.raises(ValueError, match="condition_number"):
        surfaces.quadratic_surface(0.5)


def test_saddle_is_unbounded_and_its_floor_is_the_lowest_value_in_view():
    saddle = surfaces.saddle_surface()
    assert saddle.unbounded and saddle.minimum is None and saddle.limit == 1.0
    assert saddle.floor == pytest.approx(saddle.grid(81)[2].min())
    np.testing.assert_allclose(saddle.grad(np.zeros(2)), 0.0)  # a stationary point, not a minimum


# --- computation ------------------------------------------------------------------------------
def test_run_rule_on_a_quadratic_follows_the_closed_form():
    surface = surfaces.quadratic_surface(10.0)
    H, lr, steps = surface.f.H, 0.7, 25
    run = explorer.run_rule(gd, surface, (-2.0, 1.5), steps, {"lr": lr})
    expected = [np.array([-2.0, 1.5])]
    for _ in range(steps):
        expected.append((np.eye(2) - lr * H) @ expected[-1])
    np.testing.assert_allclose(run.points, np.array(expected), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(run.losses, [0.5 * p @ H @ p for p in expected], rtol=1e-12)
    assert run.stopped_at is None and run.message is None and run.name == "gd"


def test_a_diverging_run_is_cut_and_reported():
    surface = surfaces.quadratic_surface(10.0)
    run = explorer.run_rule(gd, surface, surface.start, 500, {"lr": 2.5}, name="sgd")
    # y is multiplied by -1.5 per step: it leaves the box |y| <= 20 (10 x the view) at step k
    k = int(np.ceil(np.log(20 / 1.6) / np.log(1.5)))
    assert run.stopped_at == k and run.message == f"sgd diverged at step {k}"
    assert len(run.points) == len(run.losses) == k
    lo, hi = surface.bounds()
    assert np.all((run.points >= lo) & (run.points <= hi))
    nan_run = explorer.run_rule(nan_rule, surface, surface.start, 10, {})
    assert nan_run.stopped_at == 1 and nan_run.message == "nan_rule diverged at step 1"
    assert len(nan_run.points) == 1


def test_leaving_the_saddle_is_reported_as_leaving_the_view():
    saddle = surfaces.saddle_surface()
    run = explorer.run_rule(gd, saddle, saddle.start, 1000, {"lr": 0.1}, name="gd")
    assert run.stopped_at is not None and run.message.startswith("gd left the view at step")
    assert np.all(run.losses >= 0)  # f - floor stays >= 0 inside the view
    stuck = explorer.run_rule(gd, saddle, (1.5, 0.0), 200, {"lr": 0.1})
    assert stuck.stopped_at is None and np.abs(stuck.points[-1]).max() < 1e-12  # to the saddle


def test_hyperparameters_go_only_to_rules_that_take_them():
    sliders = {"lr": 0.1, "momentum": 0.8, "betas": (0.5, 0.9)}
    assert explorer.hyperparameters_for(gd, {}, **sliders) == {"lr": 0.1}
    assert explorer.hyperparameters_for(heavy_ball, {}, **sliders) == {"lr": 0.1, "momentum": 0.8}
    assert explorer.hyperparameters_for(betas_rule, {}, **sliders) == {"lr": 0.1,
                                                                        "betas": (0.5, 0.9)}
    assert explorer.hyperparameters_for(anything, {}, **sliders) == {"lr": 0.1}
    pinned = explorer.hyperparameters_for(heavy_ball, {"lr": 0.01, "nesterov": True}, **sliders)
    assert pinned == {"lr": 0.01, "momentum": 0.8, "nesterov": True}


def test_run_optimizers_turns_problems_into_messages():
    surface = surfaces.rosenbrock_surface()
    optimizers = {"gd": (gd, {}), "adam": (adam_step, {}), "broken": (broken, {}),
                  "fast": (gd, {"lr": 0.1})}
    runs, messages = explorer.run_optimizers(optimizers, surface, surface.start, 50, lr=1e-3)
    assert list(runs) == ["gd", "fast"]
    assert messages[0] == "adam: implement `adam_step` first"
    assert messages[1].startswith("broken: `broken` must return a pair (w_next, state)")
    assert messages[2].startswith("fast diverged at step")
    assert len(runs["gd"].points) == 51


def test_the_cache_returns_the_same_run_for_the_same_inputs():
    surface, cache = surfaces.quadratic_surface(5.0), {}
    first, _ = explorer.run_optimizers({"gd": (gd, {})}, surface, (1.0, 1.0), 20, lr=0.3,
                                       cache=cache)
    again, _ = explorer.run_optimizers({"gd": (gd, {})}, surface, (1.0, 1.0), 20, lr=0.3,
                                       cache=cache)
    other, _ = explorer.run_optimizers({"gd": (gd, {})}, surface, (1.0, 1.0), 20, lr=0.4,
                                       cache=cache)
    assert again["gd"] is first["gd"] and other["gd"] is not first["gd"]


def test_plot_functions_draw_into_the_axes_they_get():
    from dlopt.kit.plotting import new_figure

    surface = surfaces.rosenbrock_surface()
    runs, _ = explorer.run_optimizers({"gd": (gd, {}), "hb": (heavy_ball, {})}, surface,
                                      surface.start, 30, lr=1e-3, momentum=0.9)
    fig, (left, right) = new_figure(1, 2)
    explorer.plot_surface(left, surface, n=40)
    added = explorer.plot_trajectories(left, runs)
    assert left.get_xlim() == surface.xlim and len(left.collections) >= 1  # the contours
    np.testing.assert_array_equal(added[0].get_xydata(), runs["gd"].points)
    explorer.plot_losses(right, runs)
    assert right.get_yscale() == "log"
    np.testing.assert_allclose(right.get_lines()[0].get_ydata(), runs["gd"].losses)


# --- the widget -------------------------------------------------------------------------------
OPTIMIZERS = {"gd": (gd, {}), "heavy ball": (heavy_ball, {}), "betas": (betas_rule, {}),
              "adam": (adam_step, {})}


@pytest.fixture
def widget():
    return ConvergenceExplorer(OPTIMIZERS, steps=40, lr=0.05)


def _lines(widget, ax_index=1) -> dict:
    """Labelled lines (one per run) of the map (0) or the loss plot (1)."""
    ax = widget.figure.axes[ax_index]
    return {line.get_label(): line.get_xydata().copy() for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def test_the_widget_draws_every_runnable_optimizer_and_names_the_unfinished_one(widget):
    assert widget.redraw_count == 1
    assert set(_lines(widget, 0)) == set(_lines(widget, 1)) == {"gd", "heavy ball", "betas"}
    assert "adam: implement `adam_step` first" in widget.messages
    assert "implement `adam_step` first" in widget.message.value
    texts = [t.get_text() for t in widget.figure.axes[0].texts]
    assert any("implement `adam_step` first" in t for t in texts)  # also in the picture
    assert bytes(widget.image.value).startswith(b"\x89PNG")
    np.testing.assert_allclose(_lines(widget, 0)["gd"][0], widget.current_surface.start)


def test_mimebundle_has_the_widget_view_and_a_static_png(widget):
    bundle = widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == bytes(widget.image.value)
    assert "implement `adam_step` first" in bundle["text/plain"]


CONTROLS = [  # control, new value, the runs whose lines must change
    ("lr", 0.02, {"gd", "heavy ball", "betas"}),
    ("momentum", 0.5, {"heavy ball"}),
    ("beta1", 0.5, {"betas"}),
    ("beta2", 0.95, {"betas"}),
    ("steps", 25, {"gd", "heavy ball", "betas"}),
    ("x0", -2.0, {"gd", "heavy ball", "betas"}),
    ("y0", 0.5, {"gd", "heavy ball", "betas"}),
]


@pytest.mark.parametrize("name,value,changed", CONTROLS, ids=[c[0] for c in CONTROLS])
def test_each_control_redraws_once_and_changes_what_it_should(widget, name, value, changed):
    before_map, before_png = _lines(widget, 0), bytes(widget.image.value)
    count = widget.redraw_count
    getattr(widget, name).value = value
    assert widget.redraw_count == count + 1
    after_map = _lines(widget, 0)
    differs = {label for label in before_map if label in after_map and (
        before_map[label].shape != after_map[label].shape
        or not np.allclose(before_map[label], after_map[label]))}
    assert differs == changed
    assert bytes(widget.image.value) != before_png


def test_steps_and_start_point_show_in_the_data(widget):
    widget.steps.value = 25
    assert len(_lines(widget, 1)["gd"]) == 26 and widget.figure.axes[1].get_xlim() == (0, 25)
    widget.x0.value, widget.y0.value = -1.0, 0.5
    np.testing.assert_allclose(_lines(widget, 0)["gd"][0], [-1.0, 0.5])


def test_changing_the_surface_moves_the_start_and_redraws_once(widget):
    count = widget.redraw_count
    widget.surface.value = "Rosenbrock"
    assert widget.redraw_count == count + 1
    assert (widget.x0.value, widget.y0.value) == surfaces.rosenbrock_surface().start
    assert (widget.x0.min, widget.x0.max) == surfaces.rosenbrock_surface().xlim
    assert widget.figure.axes[0].get_title() == "Rosenbrock"
    np.testing.assert_allclose(_lines(widget, 0)["gd"][0], (-1.2, 1.0))


def test_the_selection_chooses_the_runs(widget):
    count = widget.redraw_count
    widget.select.value = ("heavy ball",)
    assert widget.redraw_count == count + 1
    assert set(_lines(widget, 0)) == set(_lines(widget, 1)) == {"heavy ball"}
    assert widget.messages == []  # adam is not selected any more


def test_divergence_is_reported_and_the_others_still_draw(widget):
    widget.surface.value = "Rosenbrock"
    widget.lr.value = 0.05
    diverged = [m for m in widget.messages if " diverged at step " in m]
    assert {m.split(" diverged")[0] for m in diverged} == {"gd", "heavy ball", "betas"}
    assert all(widget.runs[name].stopped_at is not None for name in ("gd", "heavy ball"))
    widget.lr.value = 1e-4
    assert not any("diverged" in m for m in widget.messages)
    assert widget.figure.axes[1].get_yscale() == "log"


def test_hold_gives_one_redraw_for_several_changes(widget):
    count = widget.redraw_count
    with widget.hold():
        widget.lr.value = 0.01
        widget.steps.value = 10
        widget.momentum.value = 0.3
    assert widget.redraw_count == count + 1
    assert len(_lines(widget, 1)["gd"]) == 11


def test_surfaces_can_be_given_as_a_list_and_the_figure_is_reused():
    widget = ConvergenceExplorer({"gd": (gd, {})}, surfaces=[surfaces.quadratic_surface(100),
                                                               surfaces.saddle_surface()], steps=10)
    assert list(widget.surface.options) == ["quadratic (κ = 100)", "saddle x² − y²"]
    figure = widget.figure
    widget.surface.value = "saddle x² − y²"
    assert widget.figure is figure
    assert widget.figure.axes[1].get_ylabel() == "f(w) + 4"


def test_a_widget_whose_rules_are_all_unfinished_still_shows_a_picture():
    widget = ConvergenceExplorer({"adam": (adam_step, {})})
    assert widget.messages == ["adam: implement `adam_step` first"]
    assert bytes(widget.image.value).startswith(b"\x89PNG")
    assert _lines(widget, 0) == {}
