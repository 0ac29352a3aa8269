"""Lesson 07: experiments with a learner's dropout, its expectation, the ensemble view, overfitting.

Every experiment takes the learner's ``dropout_forward`` (and ``dropout_backward`` where a
network is trained) as arguments. The networks are small MLPs on the digits whose linear
layers, ReLUs, loss and optimizer are torch's; only dropout is the learner's, wrapped by
:func:`numpy_dropout` (the course's NumPy-to-autograd bridge,
:func:`dlopt.kit.torch_bridge.autograd_function`): its forward calls ``dropout_forward`` and its
backward calls ``dropout_backward`` on the cache the forward returned. Training runs torch on
one thread (:func:`dlopt.kit.threads.cpu_threads`): the networks are tiny.

The interface assumed throughout (lesson 07): ``out, cache = dropout_forward(x, p, *,
train=True, rng=None)`` with ``p`` the drop probability and ``rng`` a NumPy Generator, and
``dx = dropout_backward(dout, cache)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from dlopt.kit.data import flip_labels
from dlopt.kit.learner import function_name, probe
from dlopt.kit.threads import cpu_threads
from dlopt.kit.torch_bridge import autograd_function
from dlopt.lessons.l01_activations.vanishing import init_mlp

__all__ = [
    "DropoutRun",
    "EnsembleResult",
    "ExpectationResult",
    "OverfittingSweep",
    "digits_subset",
    "ensemble_experiment",
    "ensemble_vs_eval",
    "expectation_error",
    "numpy_dropout",
    "overfitting_sweep",
    "problem_with_dropout",
    "train_with_dropout",
]


# ---------------------------------------------------------------------------------------------
# Trying the learner's functions before an experiment relies on them
# ---------------------------------------------------------------------------------------------
def problem_with_dropout(forward: Callable, backward: Callable | None = None) -> str | None:
    """Try the learner's dropout on a small array; describe what is wrong, or return None.

    Parameters
    ----------
    forward : callable
        ``dropout_forward``, called once in training mode with ``p = 0.5``.
    backward : callable, optional
        ``dropout_backward``, called on the cache of that call.

    Returns
    -------
    str or None
        ``"implement `name` first"`` for a stub, a one-line description when a call raises or
        returns the wrong kind of value, None when the functions can be used.
    """
    x = np.linspace(-2.0, 2.0, 12).reshape(3, 4) + 0.1
    result, problem = probe(forward, x.copy(), 0.5, train=True, rng=np.random.default_rng(0))
    if problem:
        return problem
    if not (isinstance(result, tuple) and len(result) == 2 and np.shape(result[0]) == x.shape):
        return f"`{function_name(forward)}` must return (out, cache) with out of x's shape"
    if backward is None:
        return None
    dx, problem = probe(backward, np.ones_like(x), result[1])
    if problem:
        return problem
    if np.shape(dx) != x.shape:
        return f"`{function_name(backward)}` must return dx of dout's shape"
    return None


# ---------------------------------------------------------------------------------------------
# E[out] = x
# ---------------------------------------------------------------------------------------------
@dataclass
class ExpectationResult:
    """Running means of many dropout draws of the same vector, against that vector.

    Attributes
    ----------
    draws : ndarray, shape (k,)
        Number of draws averaged, 1 .. n_draws.
    inverted : ndarray, shape (k,)
        Relative RMS error ``sqrt(mean_i ((m_i - x_i) / x_i)^2)`` of the running mean ``m`` of
        the learner's outputs.
    unscaled : ndarray, shape (k,)
        The same for ``out * (1 - p)``, i.e. the mask without the ``1 / (1 - p)`` scale.
    predicted : ndarray, shape (k,)
        ``sqrt(p / ((1 - p) k))``: the standard error of the mean of ``k`` inverted draws.
    p : float
    """

    draws: np.ndarray
    inverted: np.ndarray
    unscaled: np.ndarray
    predicted: np.ndarray
    p: float


def expectation_error(forward: Callable, x: np.ndarray, p: float, *, n_draws: int = 10_000,
                      seed: int = 0) -> ExpectationResult:
    """Average ``n_draws`` dropout outputs of ``x`` and measure how far the average is from x.

    One call of ``forward`` on ``n_draws`` copies of ``x`` stacked as rows (each row gets its
    own mask), then cumulative means down the rows.

    Parameters
    ----------
    forward : callable
        The learner's ``dropout_forward``.
    x : ndarray, shape (d,)
        Nonzero entries.
    p : float
        Drop probability, 0 <= p < 1.
    n_draws : int
    seed : int
        Seed of the generator passed to ``forward``.
    """
    x = np.asarray(x, dtype=np.float64)
    stacked = np.tile(x, (n_draws, 1))
    out, _ = forward(stacked, p, train=True, rng=np.random.default_rng(seed))
    out = np.asarray(out, dtype=np.float64)
    draws = np.arange(1, n_draws + 1, dtype=np.float64)
    running = np.cumsum(out, axis=0) / draws[:, None]

    def error(mean):
        return np.sqrt(np.mean(((mean - x) / x) ** 2, axis=1))

    return ExpectationResult(draws, error(running), error(running * (1.0 - p)),
                             np.sqrt(p / ((1.0 - p) * draws)), float(p))


# ---------------------------------------------------------------------------------------------
# The learner's dropout inside a torch network
# ---------------------------------------------------------------------------------------------
def numpy_dropout(forward: Callable, backward: Callable, *, seed: int = 0) -> Callable:
    """Wrap the learner's dropout as a torch function with autograd.

    Parameters
    ----------
    forward, backward : callable
        The learner's ``dropout_forward`` and ``dropout_backward``.
    seed : int
        Seed of the NumPy Generator that draws every mask of this wrapper.

    Returns
    -------
    callable
        ``dropout(t, p, train) -> tensor`` for a float64 CPU tensor ``t``: the forward pass
        calls ``forward(t as ndarray, p, train=train, rng=...)``; the backward pass calls
        ``backward(upstream gradient, cache)`` with the cache of that same forward call, so
        the gradient flows through the mask that was applied.
    """
    rng = np.random.default_rng(seed)
    function = autograd_function(
        lambda x, p, train: forward(x, p, train=train, rng=rng), backward, name="NumpyDropout",
        numpy=True, blame=(function_name(forward), function_name(backward)))

    def dropout(t: torch.Tensor, p: float, train: bool) -> torch.Tensor:
        return function.apply(t, p, train)

    dropout.__name__ = function_name(forward)
    return dropout


def _logits(params, X, dropout, p, train):
    """``X -> [linear -> ReLU -> dropout] * n_hidden -> linear``."""
    h = X
    for i in range(0, len(params) - 2, 2):
        h = dropout(torch.relu(h @ params[i] + params[i + 1]), p, train)
    return h @ params[-2] + params[-1]


@dataclass
class DropoutRun:
    """One MLP trained with the learner's dropout, and its learning curves.

    Attributes
    ----------
    p : float
        Drop probability after every hidden layer.
    steps : ndarray, shape (k,)
        Steps at which the curves were measured (0 = before training).
    train_loss, val_loss, train_accuracy, val_accuracy : ndarray, shape (k,)
        Cross-entropy and accuracy of the evaluation-mode network (dropout off) on the
        training and the validation set.
    params : list of torch.Tensor
        Weights and biases, ``[W1, b1, W2, b2, ...]`` with ``W`` of shape (in, out).
    dropout : callable
        The wrapped dropout used in training (see :func:`numpy_dropout`).
    """

    p: float
    steps: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    train_accuracy: np.ndarray
    val_accuracy: np.ndarray
    params: list = field(repr=False)
    dropout: Callable = field(repr=False)

    def logits(self, X, *, train: bool = False) -> torch.Tensor:
        """Logits for ``X`` (ndarray or tensor, shape (n, features)); ``train`` samples masks."""
        with torch.no_grad():
            return _logits(self.params, torch.as_tensor(np.asarray(X, dtype=np.float64)),
                           self.dropout, self.p, train)

    @property
    def gap(self) -> float:
        """Final training accuracy minus final validation accuracy."""
        return float(self.train_accuracy[-1] - self.val_accuracy[-1])


def train_with_dropout(forward: Callable, backward: Callable, X_train, y_train, X_val, y_val,
                       *, p: float, hidden: Sequence[int] = (256, 256), steps: int = 300,
                       lr: float = 1e-3, batch_size: int | None = None, eval_every: int = 20,
                       seed: int = 0) -> DropoutRun:
    """Train ``features -> hidden... -> classes`` with the learner's dropout after every ReLU.

    Adam (``torch.optim.Adam``, learning rate ``lr``) on torch's cross-entropy; He-normal
    hidden weights, a Xavier-normal output layer, zero biases, all drawn from ``seed``, so
    runs that differ only in ``p`` start from the same weights and see the same batches.

    Parameters
    ----------
    forward, backward : callable
        The learner's ``dropout_forward`` and ``dropout_backward``.
    X_train, X_val : ndarray, shape (n, features), float64
    y_train, y_val : ndarray, shape (n,), int
        Class indices.
    p : float
        Drop probability after every hidden layer (0 switches dropout off).
    hidden : sequence of int
    steps : int
        Optimizer steps.
    lr : float
    batch_size : int or None
        Examples per step, drawn without replacement each step; None for the whole set.
    eval_every : int
        Steps between two points of the learning curves.
    seed : int

    Returns
    -------
    DropoutRun
    """
    Xt = torch.as_tensor(np.asarray(X_train, dtype=np.float64))
    yt = torch.as_tensor(np.asarray(y_train, dtype=np.int64))
    Xv = torch.as_tensor(np.asarray(X_val, dtype=np.float64))
    yv = torch.as_tensor(np.asarray(y_val, dtype=np.int64))
    sizes = [Xt.shape[1], *hidden, int(max(yt.max(), yv.max())) + 1]
    params = init_mlp(sizes, seed)
    dropout = numpy_dropout(forward, backward, seed=seed + 1)
    optimizer = torch.optim.Adam(params, lr=lr)
    batches = torch.Generator().manual_seed(seed + 2)
    curves: dict[str, list] = {"steps": [], "tl": [], "vl": [], "ta": [], "va": []}

    def measure(step):
        with torch.no_grad():
            for X, y, loss_key, acc_key in ((Xt, yt, "tl", "ta"), (Xv, yv, "vl", "va")):
                logits = _logits(params, X, dropout, p, False)
                curves[loss_key].append(F.cross_entropy(logits, y).item())
                curves[acc_key].append((logits.argmax(dim=1) == y).double().mean().item())
        curves["steps"].append(step)

    with cpu_threads(1):
        measure(0)
        for step in range(1, steps + 1):
            if batch_size is None or batch_size >= len(Xt):
                X, y = Xt, yt
            else:
                idx = torch.randperm(len(Xt), generator=batches)[:batch_size]
                X, y = Xt[idx], yt[idx]
            loss = F.cross_entropy(_logits(params, X, dropout, p, True), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % eval_every == 0 or step == steps:
                measure(step)
    arrays = {k: np.array(v, dtype=np.float64) for k, v in curves.items()}
    return DropoutRun(float(p), arrays["steps"], arrays["tl"], arrays["vl"], arrays["ta"],
                       arrays["va"], params, dropout)


# ---------------------------------------------------------------------------------------------
# Dropout as an implicit ensemble
# ---------------------------------------------------------------------------------------------
@dataclass
class EnsembleResult:
    """Averages of sampled sub-networks against the evaluation-mode network.

    Attributes
    ----------
    sizes : ndarray, shape (n_samples,)
        Number of sub-networks averaged, 1 .. n_samples.
    ensemble_accuracy : ndarray, shape (n_samples,)
        Accuracy of the arithmetic mean of the first ``sizes[j]`` sub-networks' class
        probabilities.
    single_accuracy : ndarray, shape (n_samples,)
        Accuracy of each sampled sub-network alone.
    eval_accuracy : float
        Accuracy of the evaluation-mode network (dropout off).
    arithmetic_gap : ndarray, shape (n_samples,)
        Mean over examples of the total-variation distance ``0.5 * sum_c |P - P_eval|``
        between the arithmetic mean ``P`` of the sub-networks' probabilities and the
        evaluation-mode network's probabilities ``P_eval``.
    geometric_gap : ndarray, shape (n_samples,)
        The same for the normalized geometric mean of the sub-networks' probabilities,
        which is ``softmax(mean of their logits)``.
    agreement : ndarray, shape (n_samples,)
        Share of examples on which the arithmetic-mean ensemble and the evaluation-mode
        network predict the same class.
    p : float
    """

    sizes: np.ndarray
    ensemble_accuracy: np.ndarray
    single_accuracy: np.ndarray
    eval_accuracy: float
    arithmetic_gap: np.ndarray
    geometric_gap: np.ndarray
    agreement: np.ndarray
    p: float


def _tv(P: torch.Tensor, Q: torch.Tensor) -> float:
    return 0.5 * (P - Q).abs().sum(dim=1).mean().item()


def ensemble_vs_eval(run: DropoutRun, X, y, *, n_samples: int = 300) -> EnsembleResult:
    """Sample ``n_samples`` sub-networks (training-mode masks) and average their predictions.

    Each training-mode forward pass of ``run`` draws a fresh mask: a sub-network that shares
    its weights with all the others. Averaging many of them is an ensemble; the
    evaluation-mode network (dropout off) approximates that average in a single pass.

    Parameters
    ----------
    run : DropoutRun
        A network trained with dropout (``run.p > 0``).
    X : ndarray, shape (n, features)
    y : ndarray, shape (n,), int
    n_samples : int

    Returns
    -------
    EnsembleResult
    """
    y = torch.as_tensor(np.asarray(y, dtype=np.int64))
    eval_logits = run.logits(X, train=False)
    eval_probs = torch.softmax(eval_logits, dim=1)
    eval_pred = eval_logits.argmax(dim=1)
    prob_sum = torch.zeros_like(eval_probs)
    logit_sum = torch.zeros_like(eval_logits)
    columns: dict[str, list[float]] = {"acc": [], "single": [], "arith": [], "geo": [],
                                       "agree": []}
    with cpu_threads(1):
        for k in range(1, n_samples + 1):
            logits = run.logits(X, train=True)
            probs = torch.softmax(logits, dim=1)
            prob_sum += probs
            logit_sum += logits
            pred = prob_sum.argmax(dim=1)
            columns["single"].append((probs.argmax(dim=1) == y).double().mean().item())
            columns["acc"].append((pred == y).double().mean().item())
            columns["arith"].append(_tv(prob_sum / k, eval_probs))
            columns["geo"].append(_tv(torch.softmax(logit_sum / k, dim=1), eval_probs))
            columns["agree"].append((pred == eval_pred).double().mean().item())
    c = {k: np.array(v) for k, v in columns.items()}
    return EnsembleResult(np.arange(1, n_samples + 1, dtype=np.float64), c["acc"], c["single"],
                          (eval_pred == y).double().mean().item(), c["arith"], c["geo"],
                          c["agree"], run.p)


def ensemble_experiment(forward: Callable, backward: Callable, data, *, p: float = 0.5,
                        architectures: dict | None = None, n_samples: int = 100,
                        steps: int = 100, lr: float = 2e-3, batch_size: int = 128,
                        seed: int = 0) -> dict[str, EnsembleResult]:
    """Train one network per architecture with dropout ``p``, then compare ensembles with it.

    Parameters
    ----------
    forward, backward : callable
        The learner's ``dropout_forward`` and ``dropout_backward``.
    data : DigitsSplit
        ``(X_train, X_test, y_train, y_test)``; the test part is where predictions are
        compared.
    p : float
        Drop probability after every hidden layer.
    architectures : dict of str to tuple of int, optional
        Label -> hidden widths; default ``{"1 hidden layer": (256,),
        "2 hidden layers": (128, 128)}``.
    n_samples : int
        Sub-networks sampled per network (see :func:`ensemble_vs_eval`).
    steps, lr, batch_size, seed
        Training, see :func:`train_with_dropout` (mini-batch Adam).

    Returns
    -------
    dict of str to EnsembleResult
    """
    if architectures is None:
        architectures = {"1 hidden layer": (256,), "2 hidden layers": (128, 128)}
    X_train, X_test, y_train, y_test = data
    results = {}
    for label, hidden in architectures.items():
        run = train_with_dropout(forward, backward, X_train, y_train, X_test, y_test, p=p,
                        hidden=hidden, steps=steps, lr=lr, batch_size=batch_size,
                        eval_every=steps, seed=seed)
        results[label] = ensemble_vs_eval(run, X_test, y_test, n_samples=n_samples)
    return results


# ---------------------------------------------------------------------------------------------
# Overfitting: the train/validation gap against p
# ---------------------------------------------------------------------------------------------
def digits_subset(X, y, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` examples of every class, drawn without replacement (a small training set).

    Returns
    -------
    X_small : ndarray, shape (per_class * n_classes, features)
    y_small : ndarray, shape (per_class * n_classes,)
    """
    gen = np.random.default_rng(seed)
    y = np.asarray(y)
    idx = np.concatenate([gen.choice(np.flatnonzero(y == c), per_class, replace=False)
                          for c in np.unique(y)])
    idx.sort()
    return np.asarray(X)[idx], y[idx]


@dataclass
class OverfittingSweep:
    """One :class:`DropoutRun` per drop probability: same data, weights and batches.

    Attributes
    ----------
    ps : ndarray, shape (k,)
    runs : list of DropoutRun
        Their training curves are measured against the (partly wrong) training labels.
    n_train : int
        Size of the small training set.
    label_noise : float
        Share of its labels that were replaced by a wrong class.
    """

    ps: np.ndarray
    runs: list
    n_train: int
    label_noise: float

    def final(self, curve: str) -> np.ndarray:
        """Last value of a curve (``"train_accuracy"``, ``"val_loss"``, ...) for every p."""
        return np.array([getattr(run, curve)[-1] for run in self.runs])

    @property
    def gaps(self) -> np.ndarray:
        """Final training minus validation accuracy, per p."""
        return np.array([run.gap for run in self.runs])


def overfitting_sweep(forward: Callable, backward: Callable, data, ps: Sequence[float], *,
                      per_class: int = 30, label_noise: float = 0.2,
                      hidden: Sequence[int] = (128, 128), steps: int = 150, lr: float = 2e-3,
                      eval_every: int = 10, seed: int = 0) -> OverfittingSweep:
    """Train the same MLP on a small, partly mislabelled digits subset once per p.

    A network that fits every training label has memorized the wrong ones too: training
    accuracy above ``1 - label_noise`` is overfitting by construction, and it costs
    validation accuracy (the validation labels are clean).

    Parameters
    ----------
    forward, backward : callable
        The learner's ``dropout_forward`` and ``dropout_backward``.
    data : DigitsSplit
        ``(X_train, X_test, y_train, y_test)``: the network trains on ``per_class`` examples
        per class of the training part, ``label_noise`` of them relabelled by
        :func:`dlopt.kit.data.flip_labels`; the test part is the validation set.
    ps : sequence of float
        Drop probabilities, one run each.
    per_class, label_noise, hidden, steps, lr, eval_every, seed
        See :func:`digits_subset`, :func:`dlopt.kit.data.flip_labels` and
        :func:`train_with_dropout` (full-batch Adam).

    Returns
    -------
    OverfittingSweep
    """
    X_train, X_val, y_train, y_val = data
    X_small, y_small = digits_subset(X_train, y_train, per_class, seed)
    y_noisy, _ = flip_labels(y_small, label_noise, seed)
    runs = [train_with_dropout(forward, backward, X_small, y_noisy, X_val, y_val, p=float(p),
                      hidden=hidden, steps=steps, lr=lr, eval_every=eval_every, seed=seed)
            for p in ps]
    return OverfittingSweep(np.asarray(ps, dtype=np.float64), runs, len(y_small),
                            float(label_noise))
