"""Drivers for lesson 08: run a learner's torch class the way a check needs it, report plain data.

Each driver takes the class under test first (an autograd ``Function``, an ``nn.Module``
class, a ``torch.optim.Optimizer`` subclass), then plain scenario data (seeds, sizes, arrays,
hyperparameter dicts). It builds the tensors itself, in float64 on the CPU unless ``device``
says otherwise, uses the class many times (forward and backward, training and evaluation mode,
50 optimizer steps with a ``state_dict`` round trip), and returns numpy arrays, numbers, strings
and dicts, never tensors. The same driver runs torch's own class, the reference, so the learner's
class is compared with torch's step for step.

Nothing here implements what the lesson asks for: the drivers build models, call the class,
and read back what it did. Each driver runs with one CPU thread for torch (restored afterwards):
the tensors are tiny, results do not depend on how a reduction was split between threads, and a
busy machine cannot make the checks crawl.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch

from dlopt.kit.threads import cpu_threads

__all__ = [
    "CLOSURE_WITHOUT_GRAD",
    "IN_PLACE_WITH_AUTOGRAD",
    "run_batch_norm_function",
    "run_batch_norm_module",
    "run_dropout",
    "run_function",
    "run_optimizer",
]

DTYPE = torch.float64


#: What :func:`run_optimizer` reports under ``"failure"`` for the two classic ways a step fails.
IN_PLACE_WITH_AUTOGRAD = "step() changed a parameter in place with autograd recording"
CLOSURE_WITHOUT_GRAD = "step() called the closure with autograd off"


class _StepFailed(RuntimeError):
    """A step failed in one of the two recognised ways (the message says which)."""


def _np(t) -> np.ndarray | None:
    if t is None:
        return None
    return t.detach().to("cpu", torch.float64).numpy().copy()


def _tensor(x, device, requires_grad: bool = False) -> torch.Tensor:
    t = torch.tensor(np.asarray(x, dtype=np.float64), dtype=DTYPE, device=device)
    return t.requires_grad_(requires_grad)


# ---------------------------------------------------------------------------------------------
# Autograd functions
# ---------------------------------------------------------------------------------------------
@cpu_threads(1)
def run_function(function, x, grad_output, device: str = "cpu") -> dict:
    """Forward and backward pass of an elementwise autograd ``Function``.

    Parameters
    ----------
    function : torch.autograd.Function subclass (or anything with ``apply``)
        Called as ``function.apply(x)``.
    x : ndarray, any shape
        The input, as a float64 tensor that requires grad.
    grad_output : ndarray, same shape as x
        The gradient arriving from above: ``y.backward(grad_output)``.
    device : str

    Returns
    -------
    dict
        ``"output"``: ``y``; ``"grad_input"``: ``x.grad`` (None if backward gave none);
        ``"input_unchanged"``: whether ``x`` still holds its values after both passes.
    """
    with torch.enable_grad():
        t = _tensor(x, device, requires_grad=True)
        before = t.detach().clone()
        y = function.apply(t)
        y.backward(_tensor(grad_output, device))
    return {"output": _np(y), "grad_input": _np(t.grad),
            "input_unchanged": bool(torch.equal(t.detach(), before))}


@cpu_threads(1)
def run_batch_norm_function(function, x, gamma, beta, grad_output, eps: float = 1e-5,
                            device: str = "cpu") -> dict:
    """Forward and backward pass of a training-mode batch-norm ``Function``.

    Parameters
    ----------
    function : torch.autograd.Function subclass (or anything with ``apply``)
        Called as ``function.apply(x, gamma, beta, eps)``.
    x : ndarray, shape (N, D)
    gamma, beta : ndarray, shape (D,)
    grad_output : ndarray, shape (N, D)
        ``y.backward(grad_output)``.
    eps : float
    device : str

    Returns
    -------
    dict
        ``"output"`` (N, D), ``"dx"`` (N, D), ``"dgamma"`` (D,), ``"dbeta"`` (D,): the output
        and the gradients that reached ``x``, ``gamma`` and ``beta``.
    """
    with torch.enable_grad():
        xt, gt, bt = (_tensor(a, device, requires_grad=True) for a in (x, gamma, beta))
        y = function.apply(xt, gt, bt, eps)
        y.backward(_tensor(grad_output, device))
    return {"output": _np(y), "dx": _np(xt.grad), "dgamma": _np(gt.grad),
            "dbeta": _np(bt.grad)}


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------
@cpu_threads(1)
def run_batch_norm_module(module: type, num_features: int, *, seed: int = 0,
                          batch_size: int = 8, train_batches: int = 3,
                          hyperparameters: dict | None = None, device: str = "cpu") -> dict:
    """Train-mode and eval-mode passes of a batch-norm module, running statistics included.

    Builds ``module(num_features, **hyperparameters)`` in float64, sets ``weight`` and ``bias``
    to seeded random values, runs ``train_batches`` training batches (forward, then backward of
    a random ``grad_output``), switches to ``eval()`` for one batch, and back to ``train()``.
    Batches are seeded, with a mean around 2 and a spread around 3 per feature.

    Returns
    -------
    dict
        ``"registered"``: whether ``weight``/``bias`` are parameters and
        ``running_mean``/``running_var`` buffers; ``"initial_running"``: (2, D), the running
        statistics before any batch; ``"train_output"``, ``"train_dx"``: (train_batches, N, D);
        ``"train_dweight"``, ``"train_dbias"``, ``"running_mean"``, ``"running_var"``:
        (train_batches, D), after each batch; ``"eval_output"``, ``"eval_dx"``: (N, D);
        ``"running_after_eval"``: (2, D), the running mean and variance after the evaluation
        batch.
    """
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=DTYPE).to(device)

    m = module(num_features, **(hyperparameters or {})).to(device=device, dtype=DTYPE)
    params = dict(m.named_parameters())
    buffers = dict(m.named_buffers())
    registered = {"weight": "weight" in params, "bias": "bias" in params,
                  "running_mean": "running_mean" in buffers,
                  "running_var": "running_var" in buffers}
    initial = np.stack([_np(m.running_mean), _np(m.running_var)])
    with torch.no_grad():
        m.weight.copy_(1.0 + 0.5 * randn(num_features))
        m.bias.copy_(0.5 * randn(num_features))
    shift, scale = 2.0 + randn(num_features), 3.0 * (1.0 + 0.3 * randn(num_features).abs())

    def batch():
        return (shift + scale * randn(batch_size, num_features)).requires_grad_(True)

    def one_pass():
        x = batch()
        m.zero_grad(set_to_none=True)
        y = m(x)
        y.backward(randn(batch_size, num_features))
        return y, x.grad

    record = {k: [] for k in ("train_output", "train_dx", "train_dweight", "train_dbias",
                              "running_mean", "running_var")}
    with torch.enable_grad():
        m.train()
        for _ in range(train_batches):
            y, dx = one_pass()
            for key, value in (("train_output", y), ("train_dx", dx),
                               ("train_dweight", m.weight.grad), ("train_dbias", m.bias.grad),
                               ("running_mean", m.running_mean),
                               ("running_var", m.running_var)):
                record[key].append(_np(value))
        m.eval()
        y_eval, dx_eval = one_pass()
        m.train()
    out = {"registered": registered, "initial_running": initial}
    out.update({key: np.stack(values) for key, values in record.items()})
    out.update({"eval_output": _np(y_eval), "eval_dx": _np(dx_eval),
                "running_after_eval": np.stack([_np(m.running_mean), _np(m.running_var)])})
    return out


@cpu_threads(1)
def run_dropout(module: type, p: float | None = None, *, seed: int = 0, shape=(100, 200),
                invalid: Sequence[float] = (), device: str = "cpu") -> dict:
    """Statistics of a dropout module in training and evaluation mode.

    Masks are random, so a learner's dropout cannot match torch's entry by entry: this driver
    reports what any correct dropout must satisfy. The input is seeded, positive (uniform in
    [1, 2)), float64, of ``shape``; torch's random generator is seeded inside
    ``torch.random.fork_rng`` (the caller's generators, CPU and CUDA, are left as they were).

    Parameters
    ----------
    module : nn.Module subclass
        Built as ``module(p)``, or ``module()`` when ``p`` is None (its default).
    p : float, optional
    seed : int
    shape : tuple of int
    invalid : sequence of float
        Values of ``p`` the constructor should reject; each is tried.
    device : str

    Returns
    -------
    dict
        ``"zero_fraction"``: fraction of zeros in training mode; ``"kept_scale"``: (min, max)
        of output / input over the kept entries (nan, nan if none); ``"output_finite"``;
        ``"backward_uses_same_mask"``: ``x.grad`` equals output / input (the same mask and
        scale); ``"new_mask_each_call"``: two calls draw different masks;
        ``"input_unchanged"``; ``"eval_is_identity"``: the evaluation-mode output equals the
        input; ``"eval_grad_is_one"``; ``"rejects"``: for each value in ``invalid``, the name
        of the exception the constructor raised, or ``"accepted"``.
    """
    out: dict = {}
    where = torch.device(device)
    forked = [where.index or 0] if where.type == "cuda" else []
    with torch.random.fork_rng(devices=forked), torch.enable_grad():
        torch.manual_seed(seed)
        m = module() if p is None else module(p)
        m.train()
        x = (1.0 + torch.rand(*shape, dtype=DTYPE)).to(device).requires_grad_(True)
        before = x.detach().clone()
        y = m(x)
        y.backward(torch.ones_like(y))
        ratio = (y.detach() / x.detach())
        kept = ratio[y.detach() != 0]
        y2 = m(x)
        out["zero_fraction"] = float((y.detach() == 0).double().mean())
        out["kept_scale"] = ((float(kept.min()), float(kept.max())) if kept.numel()
                             else (float("nan"), float("nan")))
        out["output_finite"] = bool(torch.isfinite(y).all())
        out["backward_uses_same_mask"] = bool(x.grad is not None and torch.allclose(
            x.grad, ratio, rtol=1e-12, atol=1e-12, equal_nan=True))
        out["new_mask_each_call"] = bool(not torch.equal(y.detach() == 0, y2.detach() == 0))
        out["input_unchanged"] = bool(torch.equal(x.detach(), before))
        m.eval()
        x.grad = None
        y_eval = m(x)
        y_eval.backward(torch.ones_like(y_eval))
        out["eval_is_identity"] = bool(torch.equal(y_eval.detach(), x.detach()))
        out["eval_grad_is_one"] = bool(x.grad is not None and torch.equal(
            x.grad, torch.ones_like(x)))
    if invalid:
        out["rejects"] = [_constructor_outcome(module, value) for value in invalid]
    return out


def _constructor_outcome(cls, *args, **kwargs) -> str:
    try:
        cls(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - which exception is the answer
        return type(exc).__name__
    return "accepted"


# ---------------------------------------------------------------------------------------------
# Optimizers
# ---------------------------------------------------------------------------------------------
def _plain(value):
    if isinstance(value, torch.Tensor):
        return float(value.item()) if value.numel() == 1 else _np(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v) for v in value)
    return repr(value)


class _Problem:
    """A tiny regression network in float64: two layers, tanh, mean squared error.

    Its parameters, in order: ``W1`` (4, 3), ``b1`` (4,), ``frozen`` (3,) (outside the graph:
    its ``.grad`` stays None), ``W2`` (2, 4), ``b2`` (2,).
    """

    SHAPES = ((4, 3), (4,), (3,), (2, 4), (2,))

    def __init__(self, seed: int, device: str):
        g = torch.Generator().manual_seed(seed)
        self.X = torch.randn(16, 3, generator=g, dtype=DTYPE).to(device)
        self.Y = torch.randn(16, 2, generator=g, dtype=DTYPE).to(device)
        scales = (0.7, 0.3, 1.0, 0.7, 0.3)
        self.initial = [s * torch.randn(*shape, generator=g, dtype=DTYPE).to(device)
                        for s, shape in zip(scales, self.SHAPES, strict=True)]

    def loss(self, params):
        W1, b1, _frozen, W2, b2 = params
        hidden = torch.tanh(self.X @ W1.T + b1)
        return ((hidden @ W2.T + b2 - self.Y) ** 2).mean()

    @staticmethod
    def groups(params, group_overrides: dict | None):
        return [{"params": params[:3]}, {"params": params[3:], **(group_overrides or {})}]

    @staticmethod
    def flat(params) -> np.ndarray:
        return np.concatenate([_np(w).ravel() for w in params])


@contextlib.contextmanager
def _counting_foreach(counter: list):
    """Count calls of ``torch._foreach_*`` while the block runs."""
    names = [n for n in dir(torch) if n.startswith("_foreach_")]
    originals = {n: getattr(torch, n) for n in names}

    def counted(fn):
        def wrapper(*args, **kwargs):
            counter[0] += 1
            return fn(*args, **kwargs)
        return wrapper

    try:
        for n in names:
            setattr(torch, n, counted(originals[n]))
        yield
    finally:
        for n in names:
            setattr(torch, n, originals[n])


def _step(opt, closure=None):
    try:
        return opt.step() if closure is None else opt.step(closure)
    except _StepFailed:
        raise
    except RuntimeError as exc:
        if "leaf Variable that requires grad" in str(exc):
            raise _StepFailed(IN_PLACE_WITH_AUTOGRAD) from None
        raise


@cpu_threads(1)
def run_optimizer(optimizer: Callable, hyperparameters: dict | None = None, *, seed: int = 0,
                  steps: int = 50, group_overrides: dict | None = None,
                  reload_at: int | None = None, handoff: str | None = None,
                  twin: str | None = None, closure: bool = False, count_foreach: bool = False,
                  defaults: Sequence[str] = (), invalid: Sequence[dict] = (),
                  device: str = "cpu") -> dict:
    """Train a tiny network with an optimizer class and report what it did, step by step.

    The network (see ``_Problem``: ``W1``, ``b1``, a parameter ``frozen`` that never gets a
    gradient, ``W2``, ``b2``, all float64) is seeded by ``seed``. Its parameters form two
    groups: ``[W1, b1, frozen]`` with the constructor's hyperparameters and ``[W2, b2]`` with
    ``group_overrides`` (e.g. its own ``lr``). The optimizer is built as
    ``optimizer(groups, **hyperparameters)``. Each step is ``zero_grad()``, loss,
    ``backward()``, ``step()``; with ``closure=True`` it is ``step(closure)`` instead, the
    closure doing the other three and returning the loss.

    Parameters
    ----------
    optimizer : callable
        A ``torch.optim.Optimizer`` subclass (the learner's, or torch's as the reference).
    hyperparameters : dict, optional
        Constructor keyword arguments.
    seed : int
    steps : int
        Optimizer steps; 0 runs no training (for ``defaults`` and ``invalid`` only).
    group_overrides : dict, optional
        Hyperparameters of the second group.
    reload_at : int, optional
        Before this step, save ``state_dict()`` (deep-copied, as ``torch.save`` would), build
        fresh parameters with the current values and a fresh optimizer, ``load_state_dict``
        and go on with those.
    handoff : {"to_torch", "from_torch"}, optional
        With ``reload_at``: the fresh optimizer is ``torch.optim.<twin>`` (``"to_torch"``), or
        the run starts with ``torch.optim.<twin>`` and hands over to ``optimizer``
        (``"from_torch"``), with the same hyperparameters: the state must mean the same.
    twin : str, optional
        The name of the torch.optim class for ``handoff``, e.g. ``"Adam"``.
    closure : bool
    count_foreach : bool
        Report whether any ``torch._foreach_*`` function was called.
    defaults : sequence of str
        Hyperparameters to read from ``optimizer([w]).param_groups[0]`` (the defaults).
    invalid : sequence of dict
        Constructor arguments to try, one dict at a time; each should raise ValueError.
    device : str

    Returns
    -------
    dict
        ``"failure"``: ``""``, or :data:`IN_PLACE_WITH_AUTOGRAD` or :data:`CLOSURE_WITHOUT_GRAD`
        when a step failed in one of those two ways (the training results are then None).
        With ``steps > 0``: ``"params"`` of shape (steps + 1, P) (all parameters flattened
        and concatenated, before the first step and after each one), or ``"before_reload"``
        and ``"after_reload"`` (rows up to and after ``reload_at``); ``"state"``: the final
        per-parameter state, ``{"<index>": {key: value}}`` by parameter index (tensors as
        arrays, ``step`` as a float, None values left out); ``"state_before_first_step"``:
        the number of state entries right after construction; ``"closure_losses"`` (steps,)
        with ``closure`` (nan where step returned None); ``"uses_torch_foreach"`` with
        ``count_foreach``. ``"defaults"`` and ``"rejects"`` (exception names, or
        ``"accepted"``) when asked for.
    """
    hyperparameters = dict(hyperparameters or {})
    out: dict = {"failure": ""}
    counter = [0]
    context = _counting_foreach(counter) if count_foreach else contextlib.nullcontext()
    with torch.enable_grad(), context:
        if steps:
            try:
                out.update(_train(optimizer, hyperparameters, seed, steps, group_overrides,
                                  reload_at, handoff, twin, closure, device))
            except _StepFailed as exc:
                out["failure"] = str(exc)
                keys = ((["params"] if reload_at is None else ["before_reload", "after_reload"])
                        + (["closure_losses"] if closure else [])
                        + ["state", "state_before_first_step"])
                out.update(dict.fromkeys(keys))
    if count_foreach:
        out["uses_torch_foreach"] = counter[0] > 0
    if defaults:
        w = torch.zeros(3, dtype=DTYPE, device=device, requires_grad=True)
        group = optimizer([w]).param_groups[0]
        out["defaults"] = {key: _plain(group[key]) if key in group else "missing"
                           for key in defaults}
    if invalid:
        w = torch.zeros(3, dtype=DTYPE, device=device, requires_grad=True)
        out["rejects"] = [_constructor_outcome(optimizer, [w], **dict(kw)) for kw in invalid]
    return out


def _torch_twin(name) -> type:
    twin = getattr(torch.optim, str(name), None)
    if not (isinstance(twin, type) and issubclass(twin, torch.optim.Optimizer)):
        raise ValueError(f"torch.optim has no optimizer named {name!r}")
    return twin


def _train(optimizer, hyperparameters, seed, steps, group_overrides, reload_at, handoff, twin,
           closure, device) -> dict:
    problem = _Problem(seed, device)
    first, second = optimizer, optimizer
    if handoff == "to_torch":
        second = _torch_twin(twin)
    elif handoff == "from_torch":
        first = _torch_twin(twin)
    elif handoff is not None:
        raise ValueError(f"handoff must be 'to_torch', 'from_torch' or None, got {handoff!r}")

    params = [w.clone().requires_grad_(True) for w in problem.initial]
    opt = first(problem.groups(params, group_overrides), **hyperparameters)
    entries_before = len(opt.state)
    trajectory = [problem.flat(params)]
    losses = []

    def closure_fn():
        if not torch.is_grad_enabled():
            raise _StepFailed(CLOSURE_WITHOUT_GRAD)
        opt.zero_grad()
        loss = problem.loss(params)
        loss.backward()
        return loss

    for t in range(steps):
        if reload_at is not None and t == reload_at:
            saved = copy.deepcopy(opt.state_dict())
            params = [w.detach().clone().requires_grad_(True) for w in params]
            opt = second(problem.groups(params, group_overrides), **hyperparameters)
            opt.load_state_dict(saved)
        if closure:
            loss = _step(opt, closure_fn)
            losses.append(float(loss.item()) if isinstance(loss, torch.Tensor)
                          else float("nan") if loss is None else float(loss))
        else:
            opt.zero_grad()
            problem.loss(params).backward()
            _step(opt)
        trajectory.append(problem.flat(params))

    trajectory = np.stack(trajectory)
    out: dict = {}
    if reload_at is None:
        out["params"] = trajectory
    else:
        out["before_reload"] = trajectory[:reload_at + 1]
        out["after_reload"] = trajectory[reload_at + 1:]
    if closure:
        out["closure_losses"] = np.array(losses)
    index = {id(w): i for i, w in enumerate(params)}
    state = {}
    for w, entries in opt.state.items():
        if id(w) in index and isinstance(entries, dict):
            state[str(index[id(w)])] = {str(k): _plain(v) for k, v in entries.items()
                                        if v is not None}
    out["state"] = dict(sorted(state.items()))
    out["state_before_first_step"] = entries_before
    return out
