"""Lesson 04: experiments with the learner's adaptive update rules and schedules.

Nothing here implements an optimizer or a schedule: every function takes the learner's
update rule (``w_next, state = rule(w, dw, state, **hyperparameters)``) or a list of learning
rates, and only drives it (with the course's one update-rule loop,
:func:`dlopt.kit.trajectory.follow_rule`), records what it does, and measures. Gradients come
from :mod:`dlopt.kit.objectives` or from torch autograd (for the digits model, whose
backpropagation is lesson 02's exercise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dlopt.kit import plotting
from dlopt.kit.learner import attempt_each
from dlopt.kit.objectives import analytic_gradient, quadratic, quadratic_grad
from dlopt.kit.threads import cpu_threads
from dlopt.kit.trajectory import follow_rule, not_finite

__all__ = [
    "AccumulatorRun",
    "BiasCorrection",
    "DecayComparison",
    "DigitsRun",
    "NO_BIAS_CORRECTION_STEP",
    "accumulator_runs",
    "bias_correction_steps",
    "decay_comparison",
    "plot_accumulator_runs",
    "plot_bias_correction",
    "plot_decay_comparison",
    "plot_digits_runs",
    "plot_runs_on_contours",
    "train_digits",
]


# --- bias correction ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BiasCorrection:
    """Adam's first steps with and without bias correction, on a noisy constant slope.

    Attributes
    ----------
    t : ndarray, shape (n,)
        Steps 1..n.
    step_corrected, step_uncorrected : ndarray, shape (n,)
        ``|w_t - w_{t-1}| / lr``: the size of each step in units of ``lr``.
    first_moment, second_moment : ndarray, shape (n,)
        ``exp_avg / mean(g)`` and ``exp_avg_sq / mean(g**2)`` after each step (the raw,
        uncorrected moments relative to the quantities they estimate).
    """

    t: np.ndarray
    step_corrected: np.ndarray
    step_uncorrected: np.ndarray
    first_moment: np.ndarray
    second_moment: np.ndarray


#: A step count at which beta**step is 0 in float64 for any beta < 0.9993 and tiny otherwise:
#: starting Adam there switches its bias correction off, since 1 - beta**step == 1.
NO_BIAS_CORRECTION_STEP = 10**6


def bias_correction_steps(adam_step: Callable, n_steps: int = 30, *, slope: float = 1.0,
                          noise: float = 0.3, lr: float = 1e-3, betas=(0.9, 0.999),
                          seed: int = 0) -> BiasCorrection:
    """Run the learner's ``adam_step`` on a noisy constant gradient, with and without correction.

    The gradient of step ``t`` is ``slope + noise * N(0, 1)`` (one parameter). The corrected
    run starts from an empty state; the uncorrected run starts from zero moments with
    ``step = NO_BIAS_CORRECTION_STEP``, where ``1 - beta**step`` is 1: the same rule, with its
    bias correction switched off.

    Returns
    -------
    BiasCorrection
    """
    mean_g, mean_g2 = slope, slope**2 + noise**2

    def run(state):
        # the same seed, so the same noisy gradients slope + noise * N(0, 1), for both runs
        trajectory = follow_rule(adam_step, np.zeros(1), lambda w: np.full(1, slope),
                                 lrs=np.full(n_steps, lr), state=state,
                                 hyperparameters={"betas": tuple(betas)}, noise=noise,
                                 seed=seed, keep_states=True)
        sizes = np.abs(np.diff(trajectory.points[:, 0])) / lr
        m = [float(np.asarray(s["exp_avg"]).reshape(-1)[0]) / mean_g
             for s in trajectory.states]
        v = [float(np.asarray(s["exp_avg_sq"]).reshape(-1)[0]) / mean_g2
             for s in trajectory.states]
        return sizes, np.array(m), np.array(v)

    corrected, m, v = run({})
    off = {"step": NO_BIAS_CORRECTION_STEP, "exp_avg": np.zeros(1), "exp_avg_sq": np.zeros(1)}
    uncorrected, _, _ = run(off)
    return BiasCorrection(np.arange(1, n_steps + 1), corrected, uncorrected, m, v)


def plot_bias_correction(ax_moments, ax_steps, result: BiasCorrection, *,
                         betas=(0.9, 0.999)) -> None:
    """Left: the raw moments relative to what they estimate. Right: step sizes in units of lr."""
    beta1, beta2 = betas
    t = result.t
    ax_moments.plot(t, result.first_moment, "o-", ms=3, label="exp_avg / E[g]")
    ax_moments.plot(t, 1 - beta1**t, "k:", lw=1, label=r"$1-\beta_1^t$")
    ax_moments.plot(t, result.second_moment, "s-", ms=3, label="exp_avg_sq / E[g²]")
    ax_moments.plot(t, 1 - beta2**t, "k--", lw=1, label=r"$1-\beta_2^t$")
    ax_moments.set_yscale("log")
    ax_moments.set_xlabel("step t")
    ax_moments.set_title("raw moments are biased towards 0")
    ax_moments.legend(fontsize=8)
    ax_moments.grid(alpha=0.3, which="both")
    ax_steps.plot(t, result.step_corrected, "o-", ms=3, label="with bias correction")
    ax_steps.plot(t, result.step_uncorrected, "s-", ms=3, label="without")
    ax_steps.plot(t, (1 - beta1**t) / np.sqrt(1 - beta2**t), "k:", lw=1,
                  label=r"$(1-\beta_1^t)/\sqrt{1-\beta_2^t}$")
    ax_steps.axhline(1.0, color="0.6", lw=0.8)
    ax_steps.set_xlabel("step t")
    ax_steps.set_ylabel("|Δw| / lr")
    ax_steps.set_title("step size in units of lr")
    ax_steps.legend(fontsize=8)
    ax_steps.grid(alpha=0.3)


# --- Adagrad's sum against RMSprop's average ----------------------------------------------
@dataclass(frozen=True)
class AccumulatorRun:
    """A run of Adagrad or RMSprop with its per-coordinate effective learning rate.

    Attributes
    ----------
    losses : ndarray, shape (k + 1,)
        The objective at the start and after each step.
    effective_lr : ndarray, shape (k, d)
        ``lr / sqrt(accumulator)`` after each step, per coordinate: the factor by which the
        rule multiplies the gradient (``eps`` left out).
    """

    losses: np.ndarray
    effective_lr: np.ndarray


def accumulator_runs(rules: dict, objective: Callable, w0, *, lr: float, steps: int,
                     objective_kwargs: dict | None = None) -> tuple[dict, list[str]]:
    """Run rules that divide by the root of an accumulator; record their effective rate.

    Parameters
    ----------
    rules : dict of str to (rule, state_key)
        For instance ``{"Adagrad": (adagrad_step, "sum"), "RMSprop": (rmsprop_step,
        "square_avg")}``.
    objective : callable
        A point function of :mod:`dlopt.kit.objectives`.
    w0 : array_like, shape (d,)
    lr : float
    steps : int
    objective_kwargs : dict, optional

    Returns
    -------
    runs : dict of str to AccumulatorRun
    messages : list of str
        ``"RMSprop: implement `rmsprop_step` first"`` for rules that could not run.
    """
    kwargs = objective_kwargs or {}
    gradient = analytic_gradient(objective)
    def experiment(rule_and_key) -> AccumulatorRun:
        rule, key = rule_and_key
        run = follow_rule(rule, w0, lambda w: gradient(w, **kwargs), lrs=np.full(steps, lr),
                          keep_states=True, stop=not_finite)
        accumulators = np.array([np.asarray(s[key], dtype=float) for s in run.states])
        with np.errstate(divide="ignore"):
            effective = lr / np.sqrt(accumulators)
        return AccumulatorRun(np.asarray(objective(run.points, **kwargs)), effective)

    return attempt_each(rules, experiment)


def plot_accumulator_runs(ax_loss, ax_lr, runs: dict) -> None:
    """Left: the objective against the step. Right: each coordinate's effective rate."""
    for i, (name, run) in enumerate(runs.items()):
        color = plotting.color_at(i)
        ax_loss.loglog(np.arange(1, len(run.losses) + 1), run.losses, color=color, label=name)
        t = np.arange(1, len(run.effective_lr) + 1)
        for j, style in zip(range(run.effective_lr.shape[1]), ("-", "--", ":", "-."),
                            strict=False):
            ax_lr.loglog(t, run.effective_lr[:, j], ls=style, color=color,
                         label=f"{name}, w[{j}]")
    ax_loss.set_xlabel("step + 1")
    ax_loss.set_ylabel("f(w)")
    ax_loss.set_title("loss")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("lr / sqrt(accumulator)")
    ax_lr.set_title("effective learning rate per coordinate")
    for ax in (ax_loss, ax_lr):
        ax.grid(alpha=0.3, which="both")
        if runs:
            ax.legend(fontsize=8)


# --- L2 inside Adam vs decoupled decay ------------------------------------------------------------
@dataclass(frozen=True)
class DecayComparison:
    """Adam with L2 and AdamW with the same ``weight_decay`` on a quadratic.

    Attributes
    ----------
    runs : dict of str to ndarray, shape (steps + 1, 2)
        ``"Adam + L2"`` and ``"AdamW"`` trajectories (those that could run).
    messages : list of str
    l2_minimum : ndarray, shape (2,)
        Minimum of ``f(w) + weight_decay/2 |w|^2`` (by scipy's BFGS).
    box_minimum : ndarray, shape (2,)
        Minimum of ``f`` in the box ``|w_i| <= 1/weight_decay`` (by scipy's L-BFGS-B).
    unregularized_minimum : ndarray, shape (2,)
        Minimum of ``f`` itself.
    """

    runs: dict
    messages: list
    l2_minimum: np.ndarray
    box_minimum: np.ndarray
    unregularized_minimum: np.ndarray


def decay_comparison(adam_step: Callable, adamw_step: Callable, H, b, *, weight_decay: float,
                     lr: float, steps: int, start=(-1.0, -1.0)) -> DecayComparison:
    """Run the learner's Adam (L2, ``weight_decay`` in the gradient) and AdamW (decoupled decay)
    with the same ``weight_decay`` and ``lr`` on ``f(w) = 1/2 w^T H w - b^T w``.

    The three reference points are found by scipy's optimizers, not by a formula.

    Returns
    -------
    DecayComparison
    """
    from scipy.optimize import minimize

    H = np.asarray(H, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    runs, messages = attempt_each(
        {"Adam + L2": adam_step, "AdamW": adamw_step},
        lambda rule: follow_rule(rule, start, lambda w: quadratic_grad(w, H, b),
                                 lrs=np.full(steps, lr), stop=not_finite,
                                 hyperparameters={"weight_decay": weight_decay}).points)

    def minimum(penalty: float, bounds=None):
        result = minimize(lambda w: float(quadratic(w, H, b)) + penalty / 2 * w @ w,
                          np.zeros(2), jac=lambda w: quadratic_grad(w, H, b) + penalty * w,
                          method="L-BFGS-B" if bounds else "BFGS", bounds=bounds,
                          options={"gtol": 1e-12})
        return result.x

    box = [(-1 / weight_decay, 1 / weight_decay)] * 2
    return DecayComparison(runs, messages, minimum(weight_decay), minimum(0.0, box),
                           minimum(0.0))


def plot_decay_comparison(ax_map, ax_dist, result: DecayComparison, H, b, *, xlim=(-1.5, 3.0),
                          ylim=(-1.5, 4.5)) -> None:
    """Left: both trajectories on the contours of f. Right: distance to the L2 minimum."""
    H = np.asarray(H, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    plot_runs_on_contours(ax_map, lambda p: quadratic(p, H, b), result.runs, xlim=xlim,
                          ylim=ylim, marks={"L2 minimum": tuple(result.l2_minimum),
                                            "min in box": tuple(result.box_minimum),
                                            "min of f": tuple(result.unregularized_minimum)})
    ax_map.set_title("same weight_decay, two rules")
    for name, points in result.runs.items():
        distance = np.linalg.norm(points - result.l2_minimum, axis=1)
        ax_dist.semilogy(np.arange(len(distance)), np.maximum(distance, 1e-16), label=name)
    ax_dist.set_xlabel("step")
    ax_dist.set_ylabel("|w - L2 minimum|")
    ax_dist.set_title("distance to the minimum of f + λ/2 |w|²")
    ax_dist.grid(alpha=0.3, which="both")
    if result.runs:
        ax_dist.legend(fontsize=8)


def plot_runs_on_contours(ax, f: Callable, runs: dict[str, np.ndarray], *, xlim, ylim,
                          marks: dict[str, tuple[float, float]] | None = None,
                          n: int = 120) -> None:
    """Trajectories of 2-D runs over log-spaced contours of ``f``.

    Parameters
    ----------
    ax : matplotlib Axes
    f : callable
        ``f(points)`` for points of shape (..., 2).
    runs : dict of str to ndarray of shape (k, 2)
    xlim, ylim : (float, float)
    marks : dict of str to (x, y), optional
        Points to mark with a star and a label (minima).
    n : int
        Grid points per side.
    """
    X, Y = np.meshgrid(np.linspace(*xlim, n), np.linspace(*ylim, n))
    Z = f(np.stack([X, Y], axis=-1))
    low = float(Z.min())
    levels = low + np.geomspace(max(float(np.ptp(Z)) * 1e-4, 1e-12), float(np.ptp(Z)), 15)
    ax.contour(X, Y, Z, levels=levels, colors="0.75", linewidths=0.7, linestyles="solid")
    for label, points in runs.items():
        points = np.asarray(points)
        ax.plot(points[:, 0], points[:, 1], lw=1.2, label=label)
        ax.plot(*points[-1], "o", ms=4, color=ax.lines[-1].get_color())
    for label, point in (marks or {}).items():
        ax.plot(*point, "*", ms=11, color="k", zorder=5)
        ax.annotate(label, point, textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("w[0]")
    ax.set_ylabel("w[1]")
    if runs:
        ax.legend(fontsize=8, loc="upper left")


# --- a schedule in training ---------------------------------------------------------------------
@dataclass(frozen=True)
class DigitsRun:
    """One training run of a small MLP on the digits.

    Attributes
    ----------
    losses : ndarray, shape (n_steps,)
        Mini-batch cross-entropy at each step (before the update).
    lrs : ndarray, shape (n_steps,)
        Learning rate of each step.
    train_loss : float
        Cross-entropy on the whole training set after training.
    test_accuracy : float
    """

    losses: np.ndarray
    lrs: np.ndarray
    train_loss: float
    test_accuracy: float


def train_digits(rule: Callable, lrs: Sequence[float], digits, *, hidden: int = 64,
                 batch_size: int = 64, seed: int = 0, **hyperparameters) -> DigitsRun:
    """Train a 64 -> hidden -> 10 ReLU network on the digits with the learner's update rule.

    torch computes the loss and, by autograd, the gradients (float64); the learner's ``rule``
    updates each parameter array (``W1, b1, W2, b2``, each with its own state), with
    learning rate ``lrs[t]`` at step ``t``. The same ``seed`` gives the same initial weights
    (``torch.nn.Linear``'s initialization) and the same mini-batches.

    Parameters
    ----------
    rule : callable
    lrs : sequence of float, length n_steps
    digits : dlopt.kit.data.DigitsSplit
    hidden, batch_size, seed : int
    **hyperparameters
        Passed to ``rule`` (``betas``, ``weight_decay``, ...).

    Returns
    -------
    DigitsRun
    """
    import torch
    import torch.nn.functional as F

    lrs = np.asarray(lrs, dtype=np.float64).reshape(-1)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = [torch.nn.Linear(64, hidden, dtype=torch.float64),
                  torch.nn.Linear(hidden, 10, dtype=torch.float64)]
    params = [p.detach().numpy().copy() for layer in layers
              for p in (layer.weight.T, layer.bias)]
    X = torch.from_numpy(np.ascontiguousarray(digits.X_train, dtype=np.float64))
    y = torch.from_numpy(np.asarray(digits.y_train, dtype=np.int64))
    X_test = torch.from_numpy(np.ascontiguousarray(digits.X_test, dtype=np.float64))
    y_test = torch.from_numpy(np.asarray(digits.y_test, dtype=np.int64))

    def logits(tensors, inputs):
        W1, b1, W2, b2 = tensors
        return torch.relu(inputs @ W1 + b1) @ W2 + b2

    states: list[dict] = [{} for _ in params]
    losses = []
    with cpu_threads(1):  # tiny matrices: threads only add overhead (a lot, on a busy CPU)
        for lr in lrs:
            params = _digits_step(rule, params, states, lr, X, y, batch_size, generator,
                                  logits, losses, hyperparameters)
        with torch.no_grad():
            tensors = [torch.from_numpy(p) for p in params]
            train_loss = float(F.cross_entropy(logits(tensors, X), y))
            accuracy = float((logits(tensors, X_test).argmax(1) == y_test).double().mean())
    return DigitsRun(np.array(losses), lrs, train_loss, accuracy)


def _digits_step(rule, params, states, lr, X, y, batch_size, generator, logits, losses,
                 hyperparameters):
    """One mini-batch step: torch's gradients, the learner's update of every parameter array."""
    import torch
    import torch.nn.functional as F

    batch = torch.randint(0, X.shape[0], (batch_size,), generator=generator)
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    loss = F.cross_entropy(logits(tensors, X[batch]), y[batch])
    loss.backward()
    losses.append(loss.item())
    new = []
    for i, (p, t) in enumerate(zip(params, tensors, strict=True)):
        p_next, states[i] = rule(p, t.grad.numpy().copy(), states[i], lr=float(lr),
                                 **hyperparameters)
        new.append(np.asarray(p_next, dtype=np.float64))
    return new


def plot_digits_runs(ax_curves, ax_sweep, curves: dict, sweep: dict, *, smooth: int = 20) -> None:
    """Left: mini-batch loss curves (moving average). Right: final training loss against lr0.

    Parameters
    ----------
    ax_curves, ax_sweep : matplotlib Axes
    curves : dict of str to DigitsRun
        Runs to show over time.
    sweep : dict of str to (ndarray of lr0, ndarray of final training loss)
        One line per schedule.
    smooth : int
        Window of the moving average.
    """
    for name, run in curves.items():
        kernel = np.ones(smooth) / smooth
        smoothed = np.convolve(run.losses, kernel, mode="valid")
        ax_curves.semilogy(np.arange(smoothed.size) + smooth, smoothed, label=name)
    ax_curves.set_xlabel("step")
    ax_curves.set_ylabel(f"mini-batch loss ({smooth}-step average)")
    ax_curves.grid(alpha=0.3, which="both")
    for name, (lr0s, losses) in sweep.items():
        ax_sweep.loglog(lr0s, losses, "o-", label=name)
    ax_sweep.set_xlabel("lr0")
    ax_sweep.set_ylabel("training loss after training")
    ax_sweep.grid(alpha=0.3, which="both")
    for ax in (ax_curves, ax_sweep):
        if ax.lines:
            ax.legend(fontsize=8)
