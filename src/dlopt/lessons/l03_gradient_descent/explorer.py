"""Lesson 03: the convergence explorer, the learner's update rules raced on 2-D objectives.

Lesson 04 uses it too, with the learner's adaptive rules. Pure computation (:func:`run_rule`,
:func:`run_optimizers`) and plotting functions (:func:`plot_surface`,
:func:`plot_trajectories`, :func:`plot_losses`) are separate from the widget
(:class:`ConvergenceExplorer`), which only wires controls to them; all of it tests headless.

Every update rule has the course's interface::

    w_next, state = rule(w, dw, state, *, lr=..., <hyperparameters>)

``state`` is a dict, empty on the first call. The steps are taken by the course's one
update-rule loop, :func:`dlopt.kit.trajectory.follow_rule`. A rule still raising
``NotImplementedError`` is listed as "implement `adam_step` first" while the others are drawn;
a run that diverges is cut where it left the plot's surroundings and reported ("sgd diverged
at step 12").
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import ipywidgets as W
import numpy as np
from matplotlib.ticker import NullFormatter, NullLocator

from dlopt.kit import plotting
from dlopt.kit.figure_widget import FigureWidget
from dlopt.kit.learner import attempt, explain, function_name
from dlopt.kit.surfaces import Surface, default_surfaces
from dlopt.kit.trajectory import follow_rule

__all__ = [
    "LOSS_FLOOR",
    "ConvergenceExplorer",
    "Run",
    "accepted_keywords",
    "hyperparameters_for",
    "plot_losses",
    "plot_surface",
    "plot_trajectories",
    "run_optimizers",
    "run_rule",
]

Optimizers = Mapping[str, tuple[Callable, Mapping[str, Any]]]

#: Smallest value shown on a loss curve's log axis (``f - floor`` can reach 0 exactly).
LOSS_FLOOR = 1e-16


# ---------------------------------------------------------------------------------------------
# Computation
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One optimizer's run on a surface.

    Attributes
    ----------
    name : str
        The optimizer's label.
    points : ndarray, shape (k + 1, 2)
        The start point and the point after each completed step (``k <= steps``); empty,
        shape (0, 2), when the rule could not run at all.
    losses : ndarray, shape (k + 1,)
        ``f(points) - surface.floor``.
    stopped_at : int or None
        The step at which the run left the surface's bounds or produced a non-finite value.
    message : str or None
        What went wrong, for the learner ("sgd diverged at step 12"); None for a clean run.
    """

    name: str
    points: np.ndarray
    losses: np.ndarray
    stopped_at: int | None = None
    message: str | None = None


_KEYWORDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # rule -> its keywords


def accepted_keywords(rule: Callable) -> frozenset | None:
    """Names a rule accepts as keywords; None when it takes ``**kwargs`` (anything)."""
    try:
        return _KEYWORDS[rule]
    except (KeyError, TypeError):
        pass
    try:
        parameters = inspect.signature(rule).parameters.values()
    except (TypeError, ValueError):
        names = None
    else:
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            names = None
        else:
            names = frozenset(p.name for p in parameters
                              if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    with contextlib.suppress(TypeError):
        _KEYWORDS[rule] = names
    return names


def hyperparameters_for(rule: Callable, fixed: Mapping[str, Any] | None = None, *,
                        lr: float, momentum: float | None = None,
                        betas: tuple[float, float] | None = None) -> dict:
    """The keyword arguments a rule gets from the explorer's sliders and its fixed values.

    ``lr``, ``momentum`` and ``betas`` are passed only to a rule whose signature has that
    keyword (a rule with ``**kwargs`` gets ``lr`` only). Values in ``fixed`` are always passed
    and win over the sliders: ``{"lr": 0.1}`` pins that optimizer's learning rate.

    Returns
    -------
    dict
    """
    names = accepted_keywords(rule)
    sliders = {"lr": lr, "momentum": momentum, "betas": betas}
    chosen = {key: value for key, value in sliders.items() if value is not None and (
        key in names if names is not None else key == "lr")}
    chosen.update(fixed or {})
    return chosen


def run_rule(rule: Callable, surface: Surface, start, steps: int, hyperparameters=None, *,
             name: str | None = None) -> Run:
    """Run ``steps`` steps of an update rule on a surface, from ``start`` with an empty state.

    Each step computes ``dw = surface.grad(w)`` and calls
    ``w, state = rule(w, dw, state, **hyperparameters)``
    (:func:`dlopt.kit.trajectory.follow_rule`). The run stops early, with a message, when
    ``w`` stops being finite or leaves ``surface.bounds()``: the points up to the last one
    inside are kept.

    Parameters
    ----------
    rule : callable
    surface : Surface
    start : array_like, shape (2,)
    steps : int
    hyperparameters : mapping, optional
    name : str, optional
        Label used in messages (default: the rule's name).

    Returns
    -------
    Run

    Raises
    ------
    NotImplementedError
        Whatever the rule raises propagates (see :func:`run_optimizers` for the messages).
    dlopt.kit.learner.LearnerError
        If the rule does not return ``(w_next, state)`` with ``w_next`` of shape (2,), or
        changes ``w`` in place.
    """
    name = function_name(rule) if name is None else name
    (x_lo, y_lo), (x_hi, y_hi) = (corner.tolist() for corner in surface.bounds())

    def outside(w) -> bool:
        x, y = w.tolist()  # Python floats: the fastest comparisons
        return not (x_lo <= x <= x_hi and y_lo <= y <= y_hi)  # also true for nan

    start = np.array(start, dtype=np.float64).reshape(2)
    run = follow_rule(rule, start, surface.grad, steps, hyperparameters=hyperparameters,
                      stop=outside)
    with np.errstate(all="ignore"):
        losses = surface.f(run.points) - surface.floor
    message = None
    if run.stopped_at is not None:
        finite = bool(np.all(np.isfinite(run.stopped_point)))
        verb = "left the view" if surface.unbounded and finite else "diverged"
        message = f"{name} {verb} at step {run.stopped_at}"
    return Run(name, run.points, losses, run.stopped_at, message)


def run_optimizers(optimizers: Optimizers, surface: Surface, start, steps: int, *,
                   lr: float, momentum: float | None = None,
                   betas: tuple[float, float] | None = None,
                   cache: dict | None = None) -> tuple[dict[str, Run], list[str]]:
    """Run every optimizer; rules that cannot run become messages, not exceptions.

    Parameters
    ----------
    optimizers : mapping of str to (rule, hyperparameters)
        Label -> an update rule and its fixed hyperparameters (see :func:`hyperparameters_for`).
    surface, start, steps
        As for :func:`run_rule`.
    lr, momentum, betas
        The sliders' values.
    cache : dict, optional
        Runs already computed, keyed by everything that determines them; filled in place.

    Returns
    -------
    runs : dict of str to Run
        One per optimizer that ran (diverged runs included, cut short), in input order.
    messages : list of str
        ``"adam: implement `adam_step` first"``, ``"sgd diverged at step 12"``, ...
    """
    runs: dict[str, Run] = {}
    messages: list[str] = []
    start = (float(start[0]), float(start[1]))
    for name, (rule, fixed) in optimizers.items():
        hp = hyperparameters_for(rule, fixed, lr=lr, momentum=momentum, betas=betas)
        key = None
        if cache is not None:
            try:
                key = (name, rule, surface, start, int(steps), tuple(sorted(hp.items())))
                hash(key)
            except TypeError:
                key = None
        if key is not None and key in cache:
            run, message = cache[key], None
        else:
            try:
                run, message = attempt(run_rule, rule, surface, start, steps, hp, name=name)
            except Exception as exc:  # noqa: BLE001 - a learner's bug is shown, not raised
                run, message = None, explain(exc, function_name(rule))
            if run is not None and key is not None:
                if len(cache) >= 256:
                    cache.clear()
                cache[key] = run
        if run is None:
            messages.append(f"{name}: {message}")
            continue
        runs[name] = run
        if run.message:
            messages.append(run.message)
    return runs, messages


# ---------------------------------------------------------------------------------------------
# Plotting
# ---------------------------------------------------------------------------------------------
def plot_surface(ax, surface: Surface, *, n: int = 160, n_levels: int = 18) -> None:
    """Contour lines of a surface at log-spaced levels of ``f - floor``, its minimum marked.

    Parameters
    ----------
    ax : matplotlib Axes
    surface : Surface
    n : int
        Grid points per side (the grid is computed once per surface and cached).
    n_levels : int
    """
    X, Y, Z = surface.grid(n)
    levels = surface.levels(n_levels, n)
    ax.contour(X, Y, Z, levels=levels, cmap="viridis", linewidths=0.7)
    if surface.minimum is not None:
        ax.plot(*surface.minimum, marker="*", ms=10, color="k", ls="none", label="_minimum")
    ax.set_xlim(*surface.xlim)
    ax.set_ylim(*surface.ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(surface.name)


def plot_trajectories(ax, runs: Mapping[str, Run], colors: Mapping[str, str] | None = None,
                      *, markers: bool = True) -> list:
    """One line per run through its points, a circle at its start.

    Returns
    -------
    list of Artist
        What was added (so a widget can remove it before the next draw).
    """
    artists = []
    for i, (name, run) in enumerate(runs.items()):
        color = (colors or {}).get(name, plotting.color_at(i))
        artists += ax.plot(run.points[:, 0], run.points[:, 1], color=color, lw=1.4,
                           marker="." if markers and len(run.points) <= 120 else None,
                           ms=3, label=name)
        if len(run.points):
            artists += ax.plot(*run.points[0], marker="o", ms=5, color=color, ls="none",
                               label="_start")
    return artists


def plot_losses(ax, runs: Mapping[str, Run], colors: Mapping[str, str] | None = None,
                *, ylabel: str = "f(w) − f*") -> list:
    """``f - floor`` against the step, log scale; a cross where a run was stopped.

    The y range covers the data and at least one decade (so a major tick is labelled);
    values below :data:`LOSS_FLOOR` are shown at it.

    Returns
    -------
    list of Artist
    """
    artists = []
    lo, hi = np.inf, -np.inf
    for i, (name, run) in enumerate(runs.items()):
        color = (colors or {}).get(name, plotting.color_at(i))
        losses = np.maximum(run.losses, LOSS_FLOOR)
        finite = losses[np.isfinite(losses)]
        if finite.size:
            lo, hi = min(lo, finite.min()), max(hi, finite.max())
        artists += ax.plot(np.arange(len(losses)), losses, color=color, lw=1.4, label=name)
        if run.stopped_at is not None and len(losses):
            artists += ax.plot(len(losses) - 1, losses[-1], marker="x", ms=8, color=color,
                               ls="none", label="_stopped")
    if ax.get_yscale() != "log":  # setting it again would rebuild the ticks
        ax.set_yscale("log")
    ax.yaxis.set_minor_formatter(NullFormatter())
    if np.isfinite(lo):
        lo = min(lo, hi / 10.0)
        ax.set_ylim(lo / 2.0, hi * 2.0)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    return artists


# ---------------------------------------------------------------------------------------------
# The widget
# ---------------------------------------------------------------------------------------------
def _as_surfaces(surfaces) -> dict[str, Surface]:
    if surfaces is None:
        return default_surfaces()
    if isinstance(surfaces, Mapping):
        return dict(surfaces)
    if isinstance(surfaces, Surface):
        return {surfaces.name: surfaces}
    if isinstance(surfaces, Iterable):
        return {s.name: s for s in surfaces}
    raise TypeError(f"surfaces must be Surfaces or a mapping of them, got {surfaces!r}")


class ConvergenceExplorer(FigureWidget):
    """Race update rules on a 2-D objective: trajectories on its contours, and loss curves.

    Controls: the objective, which optimizers to show, ``lr`` (log scale), ``momentum``,
    ``beta1`` and ``beta2`` (passed as ``betas``), the number of steps and the start point.
    A slider's value goes only to the rules whose signature has that keyword. Choosing an
    objective moves the start point to its own, with one redraw.

    The contours are drawn once per objective and kept as the blitted background of
    :class:`dlopt.kit.figure_widget.FigureWidget`; each redraw draws only the trajectories,
    the messages and the loss plot over them.

    Parameters
    ----------
    optimizers : mapping of str to (rule, hyperparameters)
        For instance ``{"sgd": (sgd_step, {}), "nesterov": (sgd_momentum_step,
        {"nesterov": True})}``. ``rule(w, dw, state, **hp) -> (w_next, state)``. Fixed
        hyperparameters win over the sliders (``{"lr": 0.1}`` pins the learning rate).
    surfaces : mapping of str to Surface, or sequence of Surface, optional
        Default: :func:`dlopt.kit.surfaces.default_surfaces`.
    steps : int
        Initial number of steps.
    lr : float
        Initial learning rate.

    Attributes
    ----------
    runs : dict of str to Run
        The runs drawn last.
    redraw_count : int
    figure : matplotlib Figure
        One figure, reused from redraw to redraw.
    """

    figsize = (9.0, 3.6)
    layout = (1, 2)
    dpi = 72
    margins = {"left": 0.07, "right": 0.985, "bottom": 0.13, "top": 0.91, "wspace": 0.22}
    #: Grid points per side of the contour plot.
    grid_size = 120

    def __init__(self, optimizers: Optimizers, *, surfaces=None, steps: int = 100,
                 lr: float = 0.01):
        self.optimizers = {name: (rule, dict(fixed or {}))
                           for name, (rule, fixed) in dict(optimizers).items()}
        self.surfaces = _as_surfaces(surfaces)
        if not self.surfaces:
            raise ValueError("at least one surface is needed")
        self.colors = {name: plotting.color_at(i) for i, name in enumerate(self.optimizers)}
        self.runs: dict[str, Run] = {}
        self._cache: dict = {}
        self._drawn_surface = None
        self._drawn_steps = None
        self._dynamic: list = []
        self._loss_artists: list = []
        first = next(iter(self.surfaces.values()))
        names = list(self.optimizers)
        self.surface = W.Dropdown(options=list(self.surfaces), description="objective")
        self.select = W.SelectMultiple(options=names, value=tuple(names),
                                       rows=min(max(len(names), 2), 6),
                                       description="optimizers")
        slider = {"continuous_update": False, "style": {"description_width": "60px"}}
        self.lr = W.FloatLogSlider(value=lr, base=10, min=-4, max=1, step=0.05,
                                   readout_format=".2e", description="lr", **slider)
        self.momentum = W.FloatSlider(value=0.9, min=0.0, max=0.99, step=0.01,
                                      description="momentum", **slider)
        self.beta1 = W.FloatSlider(value=0.9, min=0.0, max=0.999, step=0.001,
                                   readout_format=".3f", description="beta1", **slider)
        self.beta2 = W.FloatSlider(value=0.999, min=0.9, max=0.9999, step=0.0001,
                                   readout_format=".4f", description="beta2", **slider)
        self.steps = W.IntSlider(value=steps, min=1, max=max(1000, steps), description="steps",
                                 **slider)
        self.x0 = W.FloatSlider(description="start x", readout_format=".2f", **slider)
        self.y0 = W.FloatSlider(description="start y", readout_format=".2f", **slider)
        self._set_start_sliders(first)
        super().__init__([self.surface, self.select, self.lr, self.momentum, self.beta1,
                          self.beta2, self.steps, self.x0, self.y0])
        self.children[0].layout.flex_flow = "row wrap"
        self.redraw()

    # -- controls --------------------------------------------------------------------------
    def _set_start_sliders(self, surface: Surface) -> None:
        for control, (lo, hi), value in ((self.x0, surface.xlim, surface.start[0]),
                                         (self.y0, surface.ylim, surface.start[1])):
            control.min, control.max = -1e9, 1e9  # any order of the next three works
            control.step = (hi - lo) / 400
            control.min, control.max = lo, hi
            control.value = value

    def react(self, change) -> None:
        """A new objective starts from its own start point (in the same redraw)."""
        if change["owner"] is self.surface:
            self._set_start_sliders(self.surfaces[change["new"]])

    @property
    def current_surface(self) -> Surface:
        """The objective chosen in the dropdown."""
        return self.surfaces[self.surface.value]

    def compute(self) -> tuple[dict[str, Run], list[str]]:
        """The runs for the current control values (selected optimizers only)."""
        chosen = {name: self.optimizers[name] for name in self.select.value}
        return run_optimizers(chosen, self.current_surface, (self.x0.value, self.y0.value),
                              self.steps.value, lr=self.lr.value, momentum=self.momentum.value,
                              betas=(self.beta1.value, self.beta2.value), cache=self._cache)

    # -- drawing ---------------------------------------------------------------------------
    def _make_figure(self):
        super()._make_figure()
        ax_loss = self.axes[1]
        ax_loss.set_yscale("log")
        ax_loss.yaxis.set_minor_locator(NullLocator())  # fewer ticks to lay out
        ax_loss.grid(alpha=0.3)
        # Drawn over the background at every redraw: the y axis (its range follows the data),
        # the title; the lines and the legend are marked in draw(). The frame and the x axis
        # stay in the background until the number of steps changes.
        ax_loss.yaxis.set_animated(True)
        ax_loss.title.set_animated(True)

    def prepare(self, axes) -> None:
        """Keep the contours (drawn again only for a new objective) and the loss axes (clearing
        them rebuilds every tick: slow); remove the lines of the previous redraw."""
        ax_map, ax_loss = axes
        surface = self.current_surface
        if self._drawn_surface is not surface:
            ax_map.cla()
            plot_surface(ax_map, surface, n=self.grid_size)
            self._drawn_surface = surface
            self._dynamic = []  # cleared with the axes
            self.invalidate()
        if self._drawn_steps != self.steps.value:
            ax_loss.set_xlim(0, self.steps.value)
            self._drawn_steps = self.steps.value
            self.invalidate()
        for artist in self._dynamic + self._loss_artists:
            artist.remove()
        self._dynamic, self._loss_artists = [], []

    def draw(self, fig, axes) -> list[str]:
        surface = self.current_surface
        ax_map, ax_loss = axes
        runs, messages = self.compute()
        self.runs = runs
        self._dynamic = plot_trajectories(ax_map, runs, self.colors)
        floor = surface.floor
        self._loss_artists = plot_losses(
            ax_loss, runs, self.colors,
            ylabel="f(w) − f*" if surface.minimum is not None
            else f"f(w) {'+' if floor < 0 else '−'} {abs(floor):g}")
        ax_loss.set_title(f"{self.steps.value} steps, lr = {self.lr.value:.3g}")
        if runs:
            self._loss_artists.append(ax_loss.legend(loc="upper right", fontsize=8))
        text = plotting.show_messages(ax_map, messages, corner="lower left")
        if text is not None:
            self._dynamic.append(text)
        for artist in self._dynamic + self._loss_artists:
            artist.set_animated(True)
        return messages
