"""Lesson 05: overfitting on a few digits, and what L2, L1 and early stopping do about it.

A one-hidden-layer ReLU network (64 -> 64 -> 10) is trained full-batch on 200 digits, about a
fifth of whose labels are wrong on purpose (:func:`dlopt.kit.data.flip_labels`): the digits
are so easy that a clean small set hardly overfits, while memorizing wrong labels is exactly
what overfitting is. Torch computes the gradients (forward pass, cross-entropy, autograd); the
learner's functions make every update:

- ``penalty="L2"``: ``sgd_l2_step(w, dw, state, lr=lr, lam=lam)`` for each weight matrix;
- ``penalty="L1"``: ``proximal_l1_step(w, dw, lr=lr, lam=lam)`` for each weight matrix;
- biases are not penalized: the same function with ``lam=0``.

The learner's ``early_stopping(val_losses, patience)`` then says at which epoch training would
have stopped and which epoch's weights it restores; every epoch's validation and test accuracy
is recorded, so the restored model's accuracy can be read off. :class:`OverfitExplorer` wires a
penalty and a lambda to the curves and to the histogram of the first layer's weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import ipywidgets as W
import numpy as np
import torch
import torch.nn.functional as F

from dlopt.kit import plotting
from dlopt.kit.data import flip_labels, load_digits_split
from dlopt.kit.figure_widget import FigureWidget
from dlopt.kit.learner import attempt, function_name
from dlopt.kit.threads import cpu_threads
from dlopt.lessons.l01_activations.vanishing import init_weight

__all__ = [
    "LAMS",
    "PENALTIES",
    "OverfitData",
    "OverfitExplorer",
    "PenaltyRun",
    "make_overfit_data",
    "plot_training_curves",
    "plot_weight_histogram",
    "stopping_summary",
    "train_with_penalty",
]

#: Penalties the lab knows, and the learner's function each one uses.
PENALTIES = {"L2": "sgd_l2_step", "L1": "proximal_l1_step"}
#: The lambdas of the explorer's slider.
LAMS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


class OverfitData(NamedTuple):
    """A small training set with some wrong labels, a validation set and a test set.

    Attributes
    ----------
    X_train : ndarray, shape (n_train, 64)
    y_train : ndarray, shape (n_train,), int64
        Class indices; ``n_flipped`` of them replaced by a different, random class.
    X_val, y_val : ndarray, shapes (n_val, 64) and (n_val,)
        Clean labels; used to choose lambda and to stop early.
    X_test, y_test : ndarray, shapes (n_test, 64) and (n_test,)
        Clean labels; only for reporting.
    n_flipped : int
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_flipped: int


def make_overfit_data(n_train: int = 200, n_val: int = 200, label_noise: float = 0.2,
                      seed: int = 0) -> OverfitData:
    """The first ``n_train`` training digits with noisy labels; validation and test from the rest.

    Parameters
    ----------
    n_train : int
        Training examples, taken from :func:`dlopt.kit.data.load_digits_split`'s training part
        (standardized with the statistics of that whole part).
    n_val : int
        Validation examples, the first ``n_val`` of the held-out part; the remaining held-out
        examples (250 with the defaults) are the test set.
    label_noise : float
        Probability that a training label is replaced by one of the 9 other classes (each
        label on its own: :func:`dlopt.kit.data.flip_labels` with ``exact=False``).
    seed : int

    Returns
    -------
    OverfitData
    """
    digits = load_digits_split(seed=seed)
    if not 0 < n_train <= len(digits.y_train) or not 0 < n_val < len(digits.y_test):
        raise ValueError(f"n_train must be in 1..{len(digits.y_train)} and n_val in "
                         f"1..{len(digits.y_test) - 1}")
    y, flipped = flip_labels(digits.y_train[:n_train], label_noise, seed, exact=False,
                             n_classes=10)
    return OverfitData(digits.X_train[:n_train], y, digits.X_test[:n_val],
                       digits.y_test[:n_val], digits.X_test[n_val:], digits.y_test[n_val:],
                       int(flipped.sum()))


class PenaltyRun(NamedTuple):
    """One training run, measured after every epoch (index 0: after the first epoch).

    Attributes
    ----------
    penalty : str
    lam : float
    train_loss, val_loss : ndarray, shape (epochs,)
        Cross-entropy (the data loss, without the penalty) on the training and validation sets.
    val_accuracy, test_accuracy : ndarray, shape (epochs,)
    weights : ndarray, shape (64 * hidden,)
        The first layer's weights after the last epoch, flattened.
    """

    penalty: str
    lam: float
    train_loss: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    test_accuracy: np.ndarray
    weights: np.ndarray


def _updater(step: Callable, penalty: str, lr: float) -> Callable:
    if penalty == "L2":
        def update(w, dw, lam):
            result = step(w, dw, {}, lr=lr, lam=lam)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise ValueError(f"{function_name(step)} must return a pair (w_next, state)")
            return result[0]
    elif penalty == "L1":
        def update(w, dw, lam):
            return step(w, dw, lr=lr, lam=lam)
    else:
        raise ValueError(f"penalty must be one of {sorted(PENALTIES)}, got {penalty!r}")
    return update


def train_with_penalty(step: Callable, data: OverfitData, *, penalty: str = "L2", lam: float = 0.0,
          hidden: int = 64, lr: float = 0.5, epochs: int = 300, seed: int = 0) -> PenaltyRun:
    """Full-batch training of a 64 -> hidden -> 10 ReLU network with the learner's update.

    Parameters
    ----------
    step : callable
        The learner's ``sgd_l2_step`` (``penalty="L2"``) or ``proximal_l1_step``
        (``penalty="L1"``); see the module docstring. Weight matrices get ``lam``, biases 0.
    data : OverfitData
    penalty : {"L2", "L1"}
    lam : float
    hidden : int
        Hidden units.
    lr : float
        Learning rate of every step.
    epochs : int
        Full-batch steps (one epoch = one step on all training examples).
    seed : int
        Seed of the initial weights (He-normal hidden layer, Xavier-normal output layer, zero
        biases); every lambda starts from the same weights.

    Returns
    -------
    PenaltyRun

    Notes
    -----
    Torch runs on one thread during the call (the previous setting is restored afterwards).
    """
    with cpu_threads(1):
        return _train(step, data, penalty=penalty, lam=lam, hidden=hidden, lr=lr,
                      epochs=epochs, seed=seed)


def _train(step, data, *, penalty, lam, hidden, lr, epochs, seed) -> PenaltyRun:
    update = _updater(step, penalty, lr)
    X, Xv, Xt = (torch.as_tensor(a, dtype=torch.float64)
                 for a in (data.X_train, data.X_val, data.X_test))
    y, yv, yt = (torch.as_tensor(a) for a in (data.y_train, data.y_val, data.y_test))
    gen = torch.Generator().manual_seed(seed)
    params = [init_weight("he", X.shape[1], hidden, gen), torch.zeros(hidden, dtype=torch.float64),
              init_weight("xavier", hidden, 10, gen), torch.zeros(10, dtype=torch.float64)]
    lams = [lam, 0.0, lam, 0.0]  # weights are penalized, biases are not

    def logits(inputs, ps):
        return torch.relu(inputs @ ps[0] + ps[1]) @ ps[2] + ps[3]

    history = {key: [] for key in ("train", "val", "val_acc", "test_acc")}
    for _ in range(epochs):
        ps = [p.clone().requires_grad_() for p in params]
        loss = F.cross_entropy(logits(X, ps), y)
        grads = torch.autograd.grad(loss, ps)
        params = []
        for p, g, lam_p in zip(ps, grads, lams, strict=True):
            w_next = update(p.detach().numpy().copy(), g.numpy().copy(), lam_p)
            w_next = np.asarray(w_next, dtype=np.float64)
            if w_next.shape != tuple(p.shape):
                raise ValueError(f"{function_name(step)} returned shape {w_next.shape}, "
                                 f"expected {tuple(p.shape)}")
            params.append(torch.from_numpy(w_next.copy()))
        with torch.no_grad():
            val_logits, test_logits = logits(Xv, params), logits(Xt, params)
            history["train"].append(F.cross_entropy(logits(X, params), y).item())
            history["val"].append(F.cross_entropy(val_logits, yv).item())
            history["val_acc"].append((val_logits.argmax(1) == yv).double().mean().item())
            history["test_acc"].append((test_logits.argmax(1) == yt).double().mean().item())
    return PenaltyRun(penalty, float(lam), *(np.array(history[k]) for k in history),
                       params[0].numpy().ravel().copy())


def stopping_summary(run: PenaltyRun, early_stopping: Callable, patience: int = 20):
    """Apply the learner's ``early_stopping`` to a run's validation losses.

    Parameters
    ----------
    run : PenaltyRun
    early_stopping : callable
        ``best_epoch, stop_epoch = early_stopping(val_losses, patience)``.
    patience : int

    Returns
    -------
    summary : dict or None
        ``best_epoch``, ``stop_epoch``, and the validation and test accuracy of the restored
        (best) weights; None when ``early_stopping`` is not implemented.
    message : str or None
    """
    result, message = attempt(early_stopping, run.val_loss.copy(), patience)
    if message is not None:
        return None, message
    best, stop = (int(v) for v in result)
    if not 0 <= best <= stop < len(run.val_loss):
        return None, (f"`{function_name(early_stopping)}` returned ({best}, {stop}); expected "
                      f"0 <= best_epoch <= stop_epoch < {len(run.val_loss)}")
    return {"best_epoch": best, "stop_epoch": stop,
            "val_accuracy": float(run.val_accuracy[best]),
            "test_accuracy": float(run.test_accuracy[best])}, None


def plot_training_curves(ax, run: PenaltyRun, baseline: PenaltyRun | None = None,
                         stopping: dict | None = None) -> None:
    """Training and validation loss per epoch; a faint unregularized baseline; the stop marks."""
    epochs = np.arange(len(run.train_loss))
    if baseline is not None and baseline is not run:
        ax.plot(epochs, baseline.train_loss, color="tab:blue", alpha=0.3, lw=1, ls="--",
                label="training, lambda = 0")
        ax.plot(epochs, baseline.val_loss, color="tab:orange", alpha=0.4, lw=1, ls="--",
                label="validation, lambda = 0")
    ax.plot(epochs, run.train_loss, color="tab:blue", label="training")
    ax.plot(epochs, run.val_loss, color="tab:orange", label="validation")
    if stopping is not None:
        ax.axvline(stopping["best_epoch"], color="tab:green", lw=1,
                   label=f"best epoch {stopping['best_epoch']}")
        ax.axvline(stopping["stop_epoch"], color="tab:red", lw=1, ls=":",
                   label=f"stops after epoch {stopping['stop_epoch']}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (without penalty)")
    ax.set_title(f"{run.penalty}, lambda = {run.lam:g}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


def plot_weight_histogram(ax, run: PenaltyRun, baseline: PenaltyRun | None = None) -> None:
    """Histogram of the first layer's weights, with the count of exact zeros."""
    values = [run.weights] if baseline is None else [baseline.weights, run.weights]
    limit = max(float(np.max(np.abs(v))) for v in values) or 1.0
    bins = np.linspace(-limit, limit, 61)
    if baseline is not None and baseline is not run:
        ax.hist(baseline.weights, bins=bins, color="0.6", alpha=0.5, label="lambda = 0")
    zeros = int(np.sum(run.weights == 0.0))
    ax.hist(run.weights, bins=bins, color="tab:red" if run.penalty == "L1" else "tab:blue",
            alpha=0.7, label=f"{run.penalty}, lambda = {run.lam:g}")
    ax.set_yscale("log")
    ax.set_xlabel("first-layer weight")
    ax.set_ylabel("count")
    ax.set_title(f"exactly 0: {zeros} of {run.weights.size}; "
                 f"max |w| {float(np.max(np.abs(run.weights))):.2f}")
    ax.legend(fontsize=7)


class OverfitExplorer(FigureWidget):
    """Pick a penalty and lambda; see the loss curves (left) and the weights (right).

    Runs are cached, so moving back to a setting is instant; a new setting trains one network
    (about 0.2 s). The faint dashed curves and the grey histogram are the unregularized run.

    Parameters
    ----------
    sgd_l2_step, proximal_l1_step : callable
        The learner's update functions (see :func:`train_with_penalty`).
    early_stopping : callable, optional
        The learner's ``early_stopping``; its best and stop epochs are marked.
    data : OverfitData, optional
        Default: :func:`make_overfit_data`.
    penalty : {"L2", "L1"}
    lam : float
        Initial lambda, one of ``lams``.
    lams : sequence of float
        The slider's values.
    patience : int
    epochs, hidden : int
        Passed to :func:`train_with_penalty`.
    runs : dict, optional
        Runs made already with the same ``epochs``, ``hidden`` and ``data``, keyed by
        ``(penalty, lam)``: they are shown without training again.
    """

    figsize = (9.5, 3.6)

    def __init__(self, sgd_l2_step: Callable, proximal_l1_step: Callable,
                 early_stopping: Callable | None = None, *, data: OverfitData | None = None,
                 penalty: str = "L2", lam: float = 1e-2, lams: Sequence[float] = LAMS,
                 patience: int = 20, epochs: int = 300, hidden: int = 64,
                 runs: dict | None = None):
        self.steps = {"L2": sgd_l2_step, "L1": proximal_l1_step}
        self.early_stopping = early_stopping
        self.data = make_overfit_data() if data is None else data
        self.patience = patience
        self.train_kwargs = {"epochs": epochs, "hidden": hidden}
        n_weights = self.data.X_train.shape[1] * hidden
        self.runs: dict = {(str(p), float(v)): (run, None) for (p, v), run in (runs or {}).items()
                           if len(run.val_loss) == epochs and run.weights.size == n_weights}
        self.penalty = W.ToggleButtons(options=list(PENALTIES), value=penalty,
                                       description="penalty")
        self.lam = W.SelectionSlider(options=[float(v) for v in lams], value=float(lam),
                                     description="lambda", continuous_update=False)
        super().__init__([self.penalty, self.lam])
        self.redraw()

    def run(self, penalty: str, lam: float):
        """The cached run for (penalty, lam), or a message if the learner's step is missing."""
        key = (penalty, float(lam))
        if key not in self.runs:
            self.runs[key] = attempt(train_with_penalty, self.steps[penalty], self.data,
                                     penalty=penalty, lam=lam, **self.train_kwargs)
        return self.runs[key]

    def draw(self, fig, axes) -> list[str]:
        penalty, lam = self.penalty.value, self.lam.value
        run, message = self.run(penalty, lam)
        if message is not None:
            for ax in axes:
                ax.set_axis_off()
            message = f"{penalty}: {message}"
            plotting.show_messages(axes[0], [message])
            return [message]
        baseline, _ = self.run(penalty, 0.0)
        messages, stopping = [], None
        if self.early_stopping is not None:
            stopping, note = stopping_summary(run, self.early_stopping, self.patience)
            if note is not None:
                messages.append(f"early stopping: {note}")
        plot_training_curves(axes[0], run, baseline, stopping)
        plot_weight_histogram(axes[1], run, baseline)
        plotting.show_messages(axes[0], messages)
        return messages
