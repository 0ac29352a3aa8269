"""Lesson 06: experiments on what batch norm changes in training, inference and memory.

Every experiment takes the learner's ``batchnorm_forward`` and ``batchnorm_backward`` (the
interface of :mod:`dlopt_instructor.batch_norm`); networks with batch norm run them through
:func:`dlopt.lessons.l06_batch_norm.bn_torch.numpy_batchnorm`, while torch does the linear
layers, ReLU, the loss and ``torch.optim.SGD``.

- :func:`train_grid`: the same MLP, with or without batch norm, trained at every learning rate
  and initialization scale of a grid (all runs at once: see the function);
- :func:`record_activations`: each hidden layer's values during one training run;
- :func:`batchnorm_gradient_check`: a backward pass against the learner's
  ``numerical_gradient``;
- :func:`identity_error`, :func:`inference_demo`: what gamma and beta, and the running
  statistics, are for;
- :func:`cache_nbytes`, :func:`torch_saved_bytes`, :func:`memory_table`: the memory batch norm
  adds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import NamedTuple

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F

from dlopt.kit.threads import cpu_threads
from dlopt.lessons.l06_batch_norm.bn_torch import numpy_batchnorm

__all__ = [
    "ActivationRecord",
    "GridResult",
    "cache_nbytes",
    "batchnorm_gradient_check",
    "identity_error",
    "inference_demo",
    "memory_table",
    "plot_grid",
    "record_activations",
    "torch_saved_bytes",
    "train_grid",
]


# ---------------------------------------------------------------------------------------------
# Training many MLPs at once
# ---------------------------------------------------------------------------------------------
class GridResult(NamedTuple):
    """Results of :func:`train_grid`: one entry per (initialization scale, learning rate).

    Attributes
    ----------
    lrs : ndarray, shape (n_lr,)
    init_scales : ndarray, shape (n_scale,)
    batch_norm : bool
    train_loss : ndarray, shape (n_scale, n_lr)
        Mean training-batch loss over the last tenth of the steps (nan once diverged).
    test_accuracy : ndarray, shape (n_scale, n_lr)
        On the test set, with batch norm in evaluation mode (running statistics).
    losses : ndarray, shape (n_scale, n_lr, steps)
        Training-batch loss at every step.
    """

    lrs: np.ndarray
    init_scales: np.ndarray
    batch_norm: bool
    train_loss: np.ndarray
    test_accuracy: np.ndarray
    losses: np.ndarray


class _StackedMLPs:
    """K MLPs of the same shape, evaluated together with batched matrix products.

    Each layer's weights of all K models form one tensor of shape (K, fan_in, fan_out). Hidden
    features of all K models are laid side by side, shape (N, K * width), before batch norm:
    batch norm treats every column on its own, so one call normalizes all K models, each with
    its own statistics, gamma and beta.
    """

    def __init__(self, sizes: Sequence[int], scales: Sequence[float], bn: Callable | None,
                 seed: int, dtype: torch.dtype = torch.float32):
        gen = torch.Generator().manual_seed(seed)
        self.k = len(scales)
        self.bn = bn
        scale = torch.tensor(scales, dtype=torch.float64).reshape(-1, 1, 1)
        self.weights, self.biases, self.gammas, self.betas = [], [], [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            base = torch.empty(fan_out, fan_in, dtype=torch.float64)
            torch.nn.init.kaiming_normal_(base, nonlinearity="relu", generator=gen)
            self.weights.append((scale * base.T).to(dtype).contiguous().requires_grad_())
            self.biases.append(torch.zeros(self.k, 1, fan_out, dtype=dtype, requires_grad=True))
        for width in sizes[1:-1] if bn is not None else ():
            self.gammas.append(torch.ones(self.k * width, dtype=dtype, requires_grad=True))
            self.betas.append(torch.zeros(self.k * width, dtype=dtype, requires_grad=True))
        self.states = [{} for _ in self.gammas]

    def params(self) -> list[torch.Tensor]:
        return [*self.weights, *self.biases, *self.gammas, *self.betas]

    def scale_gradients(self, factors: torch.Tensor) -> None:
        """Multiply model k's gradients by ``factors[k]`` (its learning rate)."""
        for p in self.params():
            if p.dim() == 1:  # gamma or beta of all models side by side, shape (K * width,)
                p.grad.mul_(factors.repeat_interleave(p.shape[0] // self.k))
            else:  # shape (K, ...)
                p.grad.mul_(factors.view(-1, *[1] * (p.dim() - 1)))

    def forward(self, X: torch.Tensor, train: bool = True, record: list | None = None):
        """Logits, shape (K, N, classes); ``record`` collects (linear out, ReLU in) per layer."""
        h = X.expand(self.k, *X.shape)
        n_layers = len(self.weights)
        for layer in range(n_layers):
            a = torch.baddbmm(self.biases[layer], h, self.weights[layer])
            if layer == n_layers - 1:
                return a
            z = a
            if self.bn is not None:
                k, n, width = a.shape
                flat = a.transpose(0, 1).reshape(n, k * width)
                z = self.bn(flat, self.gammas[layer], self.betas[layer], self.states[layer],
                            train=train)
                z = z.reshape(n, k, width).transpose(0, 1)
            if record is not None:
                record.append((a.detach().numpy().copy(), z.detach().numpy().copy()))
            h = torch.relu(z)
        raise AssertionError("unreachable")


def _train(forward, backward, data, configs, *, batch_norm, hidden, steps, batch_size, seed,
           record_every=None, dtype=torch.float32):
    """Train one stacked MLP per (init_scale, lr) in ``configs``; see :func:`train_grid`."""
    X_train, X_test, y_train, y_test = (torch.as_tensor(np.asarray(a)) for a in data)
    X_train, X_test = X_train.to(dtype), X_test.to(dtype)
    sizes = [X_train.shape[1], *hidden, int(y_train.max()) + 1]
    bn = numpy_batchnorm(forward, backward) if batch_norm else None
    model = _StackedMLPs(sizes, [s for s, _ in configs], bn, seed, dtype)
    lrs = torch.tensor([lr for _, lr in configs], dtype=dtype)
    # SGD with lr 1 on gradients multiplied by each model's learning rate: the step
    # w <- w - lr_k * dw for every model k at once.
    optimizer = torch.optim.SGD(model.params(), lr=1.0)
    batches = torch.randint(0, len(X_train), (steps, batch_size),
                            generator=torch.Generator().manual_seed(seed + 1))
    losses = np.empty((steps, len(configs)))
    records = []
    with cpu_threads(1):
        for step, idx in enumerate(batches):
            record = [] if record_every and step % record_every == 0 else None
            logits = model.forward(X_train[idx], record=record)
            k, n, classes = logits.shape
            per_model = F.cross_entropy(logits.reshape(k * n, classes), y_train[idx].repeat(k),
                                        reduction="none").reshape(k, n).mean(dim=1)
            optimizer.zero_grad()
            per_model.sum().backward()  # model k's loss only reaches model k's parameters
            model.scale_gradients(lrs)
            optimizer.step()
            losses[step] = per_model.detach().numpy()
            if record is not None:
                records.append((step, record))
        with torch.no_grad():
            logits = model.forward(X_test, train=False)
            accuracy = (logits.argmax(dim=2) == y_test).double().mean(dim=1).numpy()
    return losses, accuracy, records


def train_grid(forward: Callable, backward: Callable, data, lrs: Sequence[float],
               init_scales: Sequence[float], *, batch_norm: bool = True,
               hidden: Sequence[int] = (64, 64, 64), steps: int = 200, batch_size: int = 64,
               seed: int = 0) -> GridResult:
    """Train the same MLP at every (initialization scale, learning rate) of a grid.

    The MLP is ``n_features -> hidden[0] -> ... -> n_classes``: every hidden layer is linear,
    then (with ``batch_norm``) the learner's batch norm, then ReLU. Weights are He-normal
    (``torch.nn.init.kaiming_normal_``) times the initialization scale, biases zero, gamma one,
    beta zero; the loss is cross-entropy on logits; plain SGD (``torch.optim.SGD``, each run
    with its own learning rate). Every run
    starts from the same weights up to its scale and sees the same mini-batches, so the
    learning rate and the scale are the only differences. Computation is in float32, as in
    most training (the learner's batch norm receives float32 arrays). All runs train at once
    (see ``_StackedMLPs``), so the grid costs little more than one run.

    Parameters
    ----------
    forward, backward : callable
        The learner's ``batchnorm_forward`` and ``batchnorm_backward`` (not called when
        ``batch_norm`` is False).
    data : DigitsSplit
        ``(X_train, X_test, y_train, y_test)``, e.g. :func:`dlopt.kit.data.load_digits_split`.
    lrs : sequence of float
    init_scales : sequence of float
        Multipliers of the He-normal weights (1 is He initialization).
    batch_norm : bool
    hidden : sequence of int
        Widths of the hidden layers.
    steps, batch_size, seed : int
        SGD steps, examples per mini-batch (drawn with replacement), seed of weights and
        batches.

    Returns
    -------
    GridResult
    """
    configs = [(float(s), float(lr)) for s in init_scales for lr in lrs]
    losses, accuracy, _ = _train(forward, backward, data, configs, batch_norm=batch_norm,
                                 hidden=hidden, steps=steps, batch_size=batch_size, seed=seed)
    shape = (len(init_scales), len(lrs))
    tail = max(1, steps // 10)
    with np.errstate(invalid="ignore", over="ignore"):
        final = losses[-tail:].mean(axis=0)
    final[~np.isfinite(final)] = np.nan
    return GridResult(np.asarray(lrs, dtype=np.float64),
                      np.asarray(init_scales, dtype=np.float64), bool(batch_norm),
                      final.reshape(shape), accuracy.reshape(shape),
                      losses.T.reshape(*shape, steps))


def plot_grid(ax, result: GridResult, *, title: str = "") -> None:
    """Heat map of test accuracy over (initialization scale, learning rate); nan: diverged.

    Parameters
    ----------
    ax : matplotlib Axes
    result : GridResult
    title : str
    """
    acc = np.where(np.isnan(result.train_loss), np.nan, result.test_accuracy)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")  # diverged: light grey
    image = ax.imshow(acc, vmin=0.0, vmax=1.0, cmap=cmap, aspect="auto")
    for (i, j), value in np.ndenumerate(acc):
        text = "div." if np.isnan(value) else f"{value:.2f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                color="white" if value < 0.6 else "black")
    ax.set_xticks(range(len(result.lrs)), [f"{lr:g}" for lr in result.lrs])
    ax.set_yticks(range(len(result.init_scales)), [f"{s:g}" for s in result.init_scales])
    ax.set_xlabel("learning rate")
    ax.set_ylabel("init scale (x He)")
    ax.set_title(title or ("with batch norm" if result.batch_norm else "without batch norm"))
    ax.figure.colorbar(image, ax=ax, label="test accuracy", shrink=0.8)


# ---------------------------------------------------------------------------------------------
# Activations during training
# ---------------------------------------------------------------------------------------------
class ActivationRecord(NamedTuple):
    """Hidden-layer values of one training run, on the training batch of selected steps.

    Attributes
    ----------
    steps : ndarray, shape (n_snapshots,)
        The SGD steps (0 = before the first update) at which values were recorded.
    linear : ndarray, shape (n_snapshots, n_layers, batch_size * width)
        Outputs of each hidden linear layer.
    relu_input : ndarray, same shape
        Inputs of each ReLU: batch norm's output with batch norm, the linear output without.
    losses : ndarray, shape (n_steps,)
        Training-batch loss at every step.
    """

    steps: np.ndarray
    linear: np.ndarray
    relu_input: np.ndarray
    losses: np.ndarray


def record_activations(forward: Callable, backward: Callable, data, *, batch_norm: bool,
                       lr: float = 0.1, init_scale: float = 1.0,
                       hidden: Sequence[int] = (64, 64, 64), steps: int = 200,
                       every: int = 10, batch_size: int = 64,
                       seed: int = 0) -> ActivationRecord:
    """Train one MLP of :func:`train_grid` and record its hidden layers every ``every`` steps.

    Parameters
    ----------
    forward, backward : callable
        The learner's batch norm (unused without ``batch_norm``).
    data : DigitsSplit
    batch_norm : bool
    lr, init_scale : float
    hidden : sequence of int
    steps, every, batch_size, seed : int

    Returns
    -------
    ActivationRecord
    """
    losses, _, records = _train(forward, backward, data, [(float(init_scale), float(lr))],
                                batch_norm=batch_norm, hidden=hidden, steps=steps,
                                batch_size=batch_size, seed=seed, record_every=every)
    linear = np.array([[a[0].ravel() for a, _ in rec] for _, rec in records])
    relu_input = np.array([[z[0].ravel() for _, z in rec] for _, rec in records])
    return ActivationRecord(np.array([s for s, _ in records]), linear, relu_input,
                            losses[:, 0].copy())


# ---------------------------------------------------------------------------------------------
# Checks and demonstrations with the learner's functions
# ---------------------------------------------------------------------------------------------
def _relative_error(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


def batchnorm_gradient_check(forward: Callable, backward: Callable, numerical_gradient: Callable,
                   x, gamma, beta, dout, eps: float = 1e-5) -> dict[str, float]:
    """Relative errors of ``backward``'s gradients against central differences.

    The scalar checked is ``L = sum(out * dout)`` with ``out`` from ``forward`` in training
    mode (on a fresh state each time), so that ``dL/dout = dout``.

    Parameters
    ----------
    forward, backward : callable
        The learner's batch norm.
    numerical_gradient : callable
        ``numerical_gradient(f, a, h=1e-5)``: central differences of a scalar function ``f``
        at the array ``a`` (lesson 01).
    x : ndarray, shape (N, D)
    gamma, beta : ndarray, shape (D,)
    dout : ndarray, shape (N, D)
    eps : float

    Returns
    -------
    dict of str to float
        ``{"dx": ..., "dgamma": ..., "dbeta": ...}``: norm-wise relative errors
        ``||a - b|| / (||a|| + ||b||)`` (inf for a wrong shape). About 1e-10 means agreement.
    """
    x, gamma, beta, dout = (np.array(a, dtype=np.float64) for a in (x, gamma, beta, dout))

    def loss(x_, gamma_, beta_):
        return float(np.sum(forward(x_, gamma_, beta_, {}, train=True, eps=eps)[0] * dout))

    _, cache = forward(x.copy(), gamma.copy(), beta.copy(), {}, train=True, eps=eps)
    dx, dgamma, dbeta = backward(dout.copy(), cache)
    numeric = {
        "dx": numerical_gradient(lambda a: loss(a, gamma, beta), x.copy()),
        "dgamma": numerical_gradient(lambda a: loss(x, a, beta), gamma.copy()),
        "dbeta": numerical_gradient(lambda a: loss(x, gamma, a), beta.copy()),
    }
    return {name: _relative_error(analytic, numeric[name])
            for name, analytic in (("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta))}


def identity_error(forward: Callable, x, eps: float = 1e-5) -> float:
    """Largest ``|out - x|`` when ``gamma = sqrt(var + eps)`` and ``beta = mean`` (per feature).

    With these parameters batch norm in training mode undoes its own normalization: it can
    represent the identity, which it could not without gamma and beta.

    Parameters
    ----------
    forward : callable
        The learner's ``batchnorm_forward``.
    x : ndarray, shape (N, D)
    eps : float

    Returns
    -------
    float
    """
    x = np.asarray(x, dtype=np.float64)
    gamma = np.sqrt(x.var(axis=0) + eps)
    beta = x.mean(axis=0)
    out, _ = forward(x.copy(), gamma, beta, {}, train=True, eps=eps)
    return float(np.max(np.abs(np.asarray(out) - x)))


def inference_demo(forward: Callable, X, *, batch_size: int = 32, warmup_steps: int = 50,
                   seed: int = 0) -> dict:
    """Why inference uses running statistics: three measurements on the rows of ``X``.

    One example ``X[0]`` is normalized (gamma one, beta zero) inside two different batches of
    ``batch_size`` rows, and alone. In training mode its output changes with its batch-mates,
    and alone it is exactly 0 (a batch of one is its own mean). In evaluation mode, with
    running statistics gathered over ``warmup_steps`` training-mode batches, it is the same
    in every batch and alone.

    Parameters
    ----------
    forward : callable
        The learner's ``batchnorm_forward``.
    X : ndarray, shape (n, D)
        Data (e.g. hidden features or standardized digits); ``n > 2 * batch_size``.
    batch_size, warmup_steps, seed : int

    Returns
    -------
    dict
        ``train_batch_effect``: largest change of X[0]'s output between the two batches in
        training mode; ``train_alone_max``: largest ``|output|`` of X[0] alone in training
        mode (nan if ``forward`` raised); ``train_alone_error``: the name of the exception
        ``forward`` raised for a batch of one (as torch does), or None; ``eval_batch_effect``
        and ``eval_alone_effect``: the largest change between the two batches, and between a
        batch and alone, in evaluation mode.
    """
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    gamma, beta = np.ones(d), np.zeros(d)
    others = rng.permutation(np.arange(1, len(X)))
    batch_a = X[np.r_[0, others[:batch_size - 1]]]
    batch_b = X[np.r_[0, others[batch_size - 1:2 * batch_size - 2]]]

    def train_out(batch):
        return np.asarray(forward(batch.copy(), gamma, beta, {}, train=True)[0])[0]

    state: dict = {}
    for _ in range(warmup_steps):
        forward(X[rng.choice(len(X), batch_size)].copy(), gamma, beta, state, train=True)

    def eval_out(batch):
        return np.asarray(forward(batch.copy(), gamma, beta, copy.deepcopy(state),
                                  train=False)[0])[0]

    alone_max, alone_error = float("nan"), None
    try:
        with np.errstate(all="ignore"):
            alone_max = float(np.max(np.abs(train_out(X[:1]))))
    except Exception as exc:  # noqa: BLE001 - a batch of one may legitimately be refused
        alone_error = type(exc).__name__
    return {
        "train_batch_effect": float(np.max(np.abs(train_out(batch_a) - train_out(batch_b)))),
        "train_alone_max": alone_max,
        "train_alone_error": alone_error,
        "eval_batch_effect": float(np.max(np.abs(eval_out(batch_a) - eval_out(batch_b)))),
        "eval_alone_effect": float(np.max(np.abs(eval_out(batch_a) - eval_out(X[:1])))),
    }


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------
def cache_nbytes(cache, exclude: Sequence[np.ndarray] = ()) -> int:
    """Bytes held by the arrays of a cache (a dict, tuple or list, nested), each counted once.

    Parameters
    ----------
    cache : object
        What a forward pass keeps for its backward pass.
    exclude : sequence of ndarray
        Arrays that exist anyway (the layer's input, its parameters): not counted when the
        cache holds them or a view of them.

    Returns
    -------
    int
    """
    seen: dict[int, int] = {}

    def visit(value):
        if isinstance(value, np.ndarray):
            if not any(np.may_share_memory(value, other) for other in exclude):
                seen[id(value)] = value.nbytes
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    visit(cache)
    return int(sum(seen.values()))


def torch_saved_bytes(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors torch's autograd saves for the backward pass of ``module(x)``.

    Counted with ``torch.autograd.graph.saved_tensors_hooks``, each storage once. The input
    ``x`` counts when the module saves it (a linear layer saves its input to compute the
    weight's gradient); parameters and buffers do not count (they exist anyway).

    Parameters
    ----------
    module : torch.nn.Module
    x : torch.Tensor
        Input; gradients are enabled for the call.

    Returns
    -------
    int
    """
    params = {t.untyped_storage().data_ptr()
              for t in (*module.parameters(), *module.buffers())}
    storages: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x.detach().requires_grad_())
    return int(sum(storages.values()))


def memory_table(forward: Callable, shapes: Sequence[tuple[int, int]], *,
                 dtype=np.float32, seed: int = 0) -> list[dict[str, int]]:
    """Memory of one batch-norm layer for batches of the given shapes.

    Parameters
    ----------
    forward : callable
        The learner's ``batchnorm_forward``.
    shapes : sequence of (N, D)
    dtype : numpy dtype
        Of the batch, gamma and beta (float32 as in most training).
    seed : int

    Returns
    -------
    list of dict
        One row per shape: ``N``, ``D``, ``activation`` (bytes of the layer's output, an
        array of the batch's shape and dtype),
        ``cache`` (bytes of the learner's cache, not counting the input, gamma and beta
        themselves), ``torch_bn`` (bytes torch saves for
        ``BatchNorm1d`` alone) and ``parameters_and_state`` (gamma, beta and the two
        running statistics).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for n, d in shapes:
        x = rng.normal(size=(n, d)).astype(dtype)
        gamma, beta = np.ones(d, dtype=dtype), np.zeros(d, dtype=dtype)
        out, cache = forward(x, gamma, beta, {}, train=True)
        bn = torch.nn.BatchNorm1d(d).to(torch.from_numpy(x).dtype)
        rows.append({
            "N": n, "D": d, "activation": int(x.nbytes),
            "cache": cache_nbytes(cache, exclude=(x, gamma, beta)),
            "torch_bn": torch_saved_bytes(bn, torch.from_numpy(x)),
            "parameters_and_state": 4 * d * np.dtype(dtype).itemsize,
        })
    return rows
