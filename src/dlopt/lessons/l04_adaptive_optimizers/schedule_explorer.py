"""Lesson 04: the schedule explorer, a learning-rate schedule's curve and what it does to a run.

Computation (:func:`schedule_parameters`, :func:`schedule_values`, :func:`schedule_run`) and
plotting (:func:`plot_schedules`, :func:`plot_run_losses`) are separate from the widget
(:class:`ScheduleExplorer`), which only wires sliders to them; all of it tests headless. Runs
take the course's one update-rule loop, :func:`dlopt.kit.trajectory.follow_rule`.

A schedule is the learner's function of the step, ``lr = schedule(step, *, lr0, ...)``, with
``step`` an int or an integer array (lesson 04). Its keyword parameters (``lr0``,
``step_size``, ``gamma``, ``alpha``, ``beta``, ``total_steps``, ``warmup_steps``, ``lr_min``)
are read from its signature, so the explorer shows the sliders that schedule takes. A schedule
still raising ``NotImplementedError`` is reported as "implement `cosine_lr` first".
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as W
import numpy as np

from dlopt.kit import plotting
from dlopt.kit.figure_widget import FigureWidget
from dlopt.kit.learner import explain, function_name
from dlopt.kit.objectives import analytic_gradient, quadratic
from dlopt.kit.trajectory import follow_rule, not_finite

__all__ = [
    "DEFAULTS",
    "ScheduleExplorer",
    "plot_run_losses",
    "plot_schedules",
    "schedule_parameters",
    "schedule_run",
    "schedule_values",
]

#: Slider values the explorer starts from, per parameter name; ``gamma`` also per schedule.
DEFAULTS = {"lr0": 0.3, "total_steps": 200, "warmup_steps": 20, "step_size": 50,
            "gamma": 0.5, "alpha": 0.05, "beta": 1.0, "lr_min": 0.0}
_GAMMA_FOR = {"exponential_lr": 0.98, "step_lr": 0.5}
#: The bowl of the default training run: f(w) = 1/2 (w_0**2 + 10 w_1**2).
BOWL = {"H": np.diag([1.0, 10.0])}


def schedule_parameters(schedule: Callable) -> list[str]:
    """The keyword parameters of a schedule, in signature order (``step`` left out).

    >>> def cosine_lr(step, *, lr0, total_steps, lr_min=0.0): ...
    >>> schedule_parameters(cosine_lr)
    ['lr0', 'total_steps', 'lr_min']
    """
    try:
        parameters = list(inspect.signature(schedule).parameters.values())
    except (TypeError, ValueError):
        return []
    names = []
    for i, p in enumerate(parameters):
        if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and i > 0):
            names.append(p.name)
    return names


def schedule_values(schedule: Callable, steps, **params) -> tuple[np.ndarray | None, str | None]:
    """Evaluate a learner's schedule at integer steps; problems become a message.

    The schedule is called once with the whole array; if that fails (a schedule written for
    one int at a time), once per step.

    Parameters
    ----------
    schedule : callable
        ``schedule(step, **params) -> lr``.
    steps : ndarray of int, shape (n,)
    **params
        Its keyword arguments (``lr0``, ``total_steps``, ...).

    Returns
    -------
    values : ndarray, shape (n,), float64, or None
    message : str or None
        ``"implement `cosine_lr` first"``, or what went wrong; None on success.
    """
    steps = np.asarray(steps, dtype=np.int64)

    def evaluate():
        try:
            values = np.asarray(schedule(steps.copy(), **params), dtype=np.float64)
            if values.shape != steps.shape:
                raise ValueError(f"returned shape {values.shape} for steps {steps.shape}")
        except NotImplementedError:
            raise
        except Exception:  # noqa: BLE001 - maybe written for one int at a time
            values = np.array([float(schedule(int(t), **params)) for t in steps])
        return values

    try:
        with np.errstate(all="ignore"):
            return evaluate(), None
    except Exception as exc:  # noqa: BLE001 - a learner's bug is shown, not raised
        return None, explain(exc, function_name(schedule))


def schedule_run(rule: Callable, lrs, *, objective: Callable = quadratic,
                 objective_kwargs: Mapping | None = None, start=(-2.5, 1.5), noise: float = 0.0,
                 seed: int = 0, **hyperparameters) -> tuple[np.ndarray | None, str | None]:
    """The loss along a run of ``rule`` with learning rate ``lrs[t]`` at step ``t``.

    Each step uses the objective's analytic gradient plus Gaussian noise of standard deviation
    ``noise`` (a stand-in for mini-batch noise; the same ``seed`` gives the same noise).

    Parameters
    ----------
    rule : callable
        ``w_next, state = rule(w, dw, state, lr=..., **hyperparameters)``.
    lrs : array_like, shape (n,)
    objective : callable
        A point function of :mod:`dlopt.kit.objectives` (default: a quadratic bowl).
    objective_kwargs : mapping, optional
        Its extra arguments; default :data:`BOWL` for the default quadratic.
    start : array_like, shape (d,)
    noise : float
    seed : int

    Returns
    -------
    losses : ndarray, shape (k + 1,), or None
        ``objective(w)`` at the start and after each step; shorter if ``w`` stopped being
        finite.
    message : str or None
        ``"implement `adam_step` first"``, a divergence note, or None.
    """
    if objective_kwargs is None:
        objective_kwargs = BOWL if objective is quadratic else {}
    gradient = analytic_gradient(objective)
    try:
        run = follow_rule(rule, start, lambda w: gradient(w, **objective_kwargs), lrs=lrs,
                          hyperparameters=hyperparameters, noise=noise, seed=seed,
                          stop=not_finite)
    except Exception as exc:  # noqa: BLE001 - a learner's bug is shown, not raised
        return None, explain(exc, function_name(rule))
    message = None
    if run.stopped_at is not None:
        message = f"{function_name(rule)} diverged at step {run.stopped_at}"
    return np.asarray(objective(run.points, **objective_kwargs), dtype=float), message


def plot_schedules(ax, steps, curves: Mapping[str, np.ndarray], *, title: str = "",
                   messages: Sequence[str] = (), styles: Mapping[str, dict] | None = None,
                   logy: bool = False, legend: str | None = "upper right") -> None:
    """Learning rate against the step, one line per schedule.

    Parameters
    ----------
    ax : matplotlib Axes
    steps : ndarray, shape (n,)
    curves : mapping of str to ndarray of shape (n,)
    title : str
    messages : sequence of str
        Shown in the corner (schedules that could not be drawn).
    styles : mapping of str to dict, optional
        Extra ``ax.plot`` keywords per curve (e.g. a dashed baseline).
    logy : bool
        Log scale for the learning rate.
    legend : str or None
        Where the legend goes (a matplotlib ``loc``); None for no legend.
    """
    styles = styles or {}
    for label, values in curves.items():
        ax.plot(steps, values, label=label, lw=1.8, **styles.get(label, {}))
    if logy:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))  # short tick labels
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curves and legend is not None:
        ax.legend(fontsize=8, loc=legend)
    plotting.show_messages(ax, messages)


def plot_run_losses(ax, losses: Mapping[str, np.ndarray], *, title: str = "",
                    messages: Sequence[str] = (),
                    styles: Mapping[str, dict] | None = None) -> None:
    """Loss against the step on a log scale, one line per run; the legend gives the final loss
    (the mean over the last 10 % of the steps, which smooths the noise).

    Parameters
    ----------
    ax : matplotlib Axes
    losses : mapping of str to ndarray of shape (k + 1,)
        Label -> the loss at the start and after each step (:func:`schedule_run`).
    title : str
    messages : sequence of str
        Shown in the corner (runs that could not be made).
    styles : mapping of str to dict, optional
        Extra ``ax.plot`` keywords per run.
    """
    styles = styles or {}
    for label, values in losses.items():
        values = np.maximum(np.asarray(values, dtype=float), 1e-16)
        tail = values[-max(1, len(values) // 10):]
        ax.plot(np.arange(len(values)), values, lw=1.2,
                label=f"{label}: final {tail.mean():.2g}", **styles.get(label, {}))
    if ax.get_yscale() != "log":  # setting it again would rebuild the ticks
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("f(w)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="major")
    if losses:
        ax.legend(fontsize=8, loc="lower left")
    plotting.show_messages(ax, messages)


class ScheduleExplorer(FigureWidget):
    """Pick one of your schedules and its parameters; see its curve and a run that uses it.

    Left: the learning rate against the step, with the constant ``lr0`` dashed. Right: the
    loss of ``update_rule`` (your ``adam_step``, say) on a 2-D objective with noisy gradients,
    with the schedule and with the constant ``lr0``, from the same start with the same noise.
    Only the sliders the chosen schedule takes are shown.

    Parameters
    ----------
    schedules : mapping of str to callable
        For instance ``{"cosine_lr": cosine_lr, ...}``: ``schedule(step, *, lr0, ...)``.
    update_rule : callable, optional
        ``w_next, state = rule(w, dw, state, *, lr, ...)``; without one, only the curve.
    hyperparameters : mapping, optional
        Fixed extra arguments of ``update_rule``.
    objective : callable
        A point function of :mod:`dlopt.kit.objectives`; default the bowl
        ``1/2 (w_0**2 + 10 w_1**2)``.
    objective_kwargs : mapping, optional
    start : (float, float)
    noise : float
        Initial standard deviation of the gradient noise.
    **initial
        Initial slider values by parameter name (``lr0=0.1``, ``total_steps=300``...).

    Attributes
    ----------
    values : ndarray or None
        The schedule's learning rates drawn last (steps ``0 .. total_steps``).
    losses : dict of str to ndarray
        The runs drawn last.
    """

    figsize = (9.0, 3.4)
    layout = (1, 2)
    dpi = 72
    margins = {"left": 0.085, "right": 0.99, "bottom": 0.14, "top": 0.91, "wspace": 0.25}

    def __init__(self, schedules: Mapping[str, Callable], update_rule: Callable | None = None,
                 *, hyperparameters: Mapping | None = None, objective: Callable = quadratic,
                 objective_kwargs: Mapping | None = None, start=(-2.5, 1.5), noise: float = 1.0,
                 **initial):
        if not schedules:
            raise ValueError("at least one schedule is needed")
        unknown = set(initial) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"no slider for {sorted(unknown)}; sliders: {sorted(DEFAULTS)}")
        self.schedules = dict(schedules)
        self.update_rule = update_rule
        self.hyperparameters = dict(hyperparameters or {})
        self.objective = objective
        self.objective_kwargs = objective_kwargs
        self.start = tuple(start)
        self.values: np.ndarray | None = None
        self.losses: dict[str, np.ndarray] = {}
        values = {**DEFAULTS, **initial}
        first = next(iter(self.schedules))
        if "gamma" not in initial:  # a schedule starts from its own sensible gamma
            values["gamma"] = _GAMMA_FOR.get(first, values["gamma"])
        style = {"continuous_update": False, "style": {"description_width": "80px"}}
        self.schedule = W.Dropdown(options=list(self.schedules), description="schedule",
                                   style=style["style"])
        self.sliders = {
            "lr0": W.FloatLogSlider(value=values["lr0"], base=10, min=-4, max=0, step=0.05,
                                    readout_format=".2e", description="lr0", **style),
            "total_steps": W.IntSlider(value=values["total_steps"], min=10, max=1000, step=10,
                                       description="total_steps", **style),
            "warmup_steps": W.IntSlider(value=values["warmup_steps"], min=1, max=500,
                                        description="warmup_steps", **style),
            "step_size": W.IntSlider(value=values["step_size"], min=1, max=500,
                                     description="step_size", **style),
            "gamma": W.FloatSlider(value=values["gamma"], min=0.05, max=1.0, step=0.005,
                                   readout_format=".3f", description="gamma", **style),
            "alpha": W.FloatLogSlider(value=values["alpha"], base=10, min=-3, max=0,
                                      step=0.05, readout_format=".3f", description="alpha",
                                      **style),
            "beta": W.FloatSlider(value=values["beta"], min=0.1, max=2.0, step=0.05,
                                  description="beta", **style),
            "lr_min": W.FloatSlider(value=values["lr_min"], min=0.0, max=0.1, step=0.001,
                                    readout_format=".3f", description="lr_min", **style),
        }
        self.noise = W.FloatSlider(value=noise, min=0.0, max=5.0, step=0.1,
                                   description="gradient noise", **style)
        super().__init__([self.schedule, *self.sliders.values(), self.noise])
        self.children[0].layout.flex_flow = "row wrap"
        self.redraw()

    # -- controls ----------------------------------------------------------------------------
    def react(self, change) -> None:
        """A new schedule starts from its own sensible gamma (0.5 for steps, 0.98 per step),
        in the same redraw."""
        if change["owner"] is self.schedule and change["new"] in _GAMMA_FOR:
            self.sliders["gamma"].value = _GAMMA_FOR[change["new"]]

    @property
    def current(self) -> Callable:
        """The schedule chosen in the dropdown."""
        return self.schedules[self.schedule.value]

    def parameters(self) -> dict:
        """The current schedule's keyword arguments from the sliders (others keep defaults)."""
        names = schedule_parameters(self.current)
        return {name: self.sliders[name].value for name in names if name in self.sliders}

    def _show_sliders(self) -> list[str]:
        names = schedule_parameters(self.current)
        for name, slider in self.sliders.items():
            slider.layout.display = "" if name in names or name == "total_steps" else "none"
        missing = [n for n in names if n not in self.sliders and _required(self.current, n)]
        return [f"no slider for `{n}` (parameter of `{function_name(self.current)}`)"
                for n in missing]

    # -- drawing -----------------------------------------------------------------------------
    def prepare(self, axes) -> None:
        """Remove the previous curves, legends and messages but keep the axes: clearing them
        would build every tick again, which costs more than drawing the curves."""
        for ax in axes:
            for artist in [*ax.lines, *ax.texts]:
                artist.remove()
            if ax.legend_ is not None:
                ax.legend_.remove()
            ax.relim()  # the next curves set the limits afresh
            ax.set_prop_cycle(None)  # and take the colors from the first one again
        self.invalidate()

    def draw(self, fig, axes) -> list[str]:
        ax_lr, ax_loss = axes
        messages = self._show_sliders()
        total = int(self.sliders["total_steps"].value)
        lr0 = float(self.sliders["lr0"].value)
        steps = np.arange(total + 1)
        name = self.schedule.value
        values, problem = (None, None) if messages else schedule_values(
            self.current, steps, **self.parameters())
        if problem:
            messages.append(problem)
        self.values = values
        curves = {"constant lr0": np.full(steps.shape, lr0)}
        if values is not None:
            curves[name] = values
        dashed = {"constant lr0": {"ls": "--", "color": "0.5"}}
        plot_schedules(ax_lr, steps, curves, title=f"{name}, lr0 = {lr0:.3g}", styles=dashed)
        self.losses = {}
        run_messages = []
        if self.update_rule is not None:
            runs = {"constant lr0": curves["constant lr0"][:total]}
            if values is not None:
                runs[name] = values[:total]
            for label, lrs in runs.items():
                losses, message = schedule_run(
                    self.update_rule, lrs, objective=self.objective,
                    objective_kwargs=self.objective_kwargs, start=self.start,
                    noise=self.noise.value, **self.hyperparameters)
                if losses is not None:
                    self.losses[label] = losses
                if message and message not in run_messages:
                    run_messages.append(message)
            rule = function_name(self.update_rule)
            title = f"{rule}, gradient noise σ = {self.noise.value:.2g}"
        else:
            title = "no update rule given"
        plot_run_losses(ax_loss, self.losses, title=title, styles=dashed,
                        messages=run_messages)
        plotting.show_messages(ax_lr, messages)
        return messages + run_messages


def _required(fn: Callable, name: str) -> bool:
    try:
        return inspect.signature(fn).parameters[name].default is inspect.Parameter.empty
    except (TypeError, ValueError, KeyError):
        return False
