"""Lesson 08: experiments with a digits classifier built from the learner's torch components.

- :func:`missing_components` tries each component on a tiny input and says which are not
  implemented yet, so an experiment can print "implement `Adam` first" instead of crashing.
- :func:`gradcheck_functions` runs ``torch.autograd.gradcheck`` on autograd Functions.
- :func:`train_with_components` trains ``64 -> hidden -> 10`` (linear, batch norm,
  activation, dropout, linear) on the digits with the components it is given, on any device,
  and reports the training loss and test accuracy per epoch (a :class:`ComponentsRun`);
  :func:`plot_component_runs` draws runs side by side.
- :func:`time_optimizer_steps` times ``step()`` of several optimizers on a model made of many
  small tensors, where a per-tensor loop pays for every tensor and ``torch._foreach_*`` does not.

The learner's classes are passed in; torch provides what belongs to other lessons (linear
layers and their initialization, the cross-entropy loss).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from dlopt.kit import threads
from dlopt.kit.data import DigitsSplit, load_digits_split
from dlopt.kit.plotting import show_messages
from dlopt.kit.timing import Timing, measure

__all__ = [
    "FunctionModule",
    "ComponentsRun",
    "gradcheck_functions",
    "missing_components",
    "plot_component_runs",
    "time_optimizer_steps",
    "train_with_components",
]


def _name(obj) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


class FunctionModule(torch.nn.Module):
    """An ``nn.Module`` whose forward is ``function.apply(x)`` (an autograd Function)."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function.apply(x)

    def extra_repr(self) -> str:
        return _name(self.function)


# ---------------------------------------------------------------------------------------------
# Are the components there?
# ---------------------------------------------------------------------------------------------
def _smoke(kind: str, component) -> None:
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    if kind == "activation":
        component.apply(x).sum().backward()
    elif kind == "batch_norm_function":
        ones = torch.ones(4, dtype=torch.float64, requires_grad=True)
        component.apply(x, ones, torch.zeros(4, dtype=torch.float64), 1e-5).sum().backward()
    elif kind == "batch_norm":
        m = component(4).double()
        m(x).sum().backward()
        m.eval()
        m(x)
    elif kind == "dropout":
        m = component(0.5)
        m(x).sum().backward()
        m.eval()
        m(x)
    elif kind == "optimizer":
        w = torch.zeros(3, requires_grad=True)
        opt = component([w])
        (w - 1.0).pow(2).sum().backward()
        opt.step()
    else:
        raise ValueError(f"unknown kind of component {kind!r}")


def missing_components(**components) -> list[str]:
    """Messages for the components that do not work yet; empty when all of them do.

    Parameters
    ----------
    **components : tuple (kind, component)
        ``name=(kind, component)`` with kind one of ``"activation"`` (an autograd Function of
        one tensor), ``"batch_norm_function"``, ``"batch_norm"`` and ``"dropout"`` (module
        classes) and ``"optimizer"`` (an Optimizer class). Each is tried on a tiny input.

    Returns
    -------
    list of str
        ``"implement `Adam` first"`` for a component that raises NotImplementedError,
        ``"`Adam` raised TypeError: ..."`` for one that raises something else.
    """
    messages = []
    for label, (kind, component) in components.items():
        try:
            with torch.random.fork_rng(devices=[]), torch.enable_grad():
                _smoke(kind, component)
        except NotImplementedError:
            messages.append(f"implement `{label}` first")
        except Exception as exc:  # noqa: BLE001 - any failure of learner code becomes a message
            messages.append(f"`{label}` raised {type(exc).__name__}: {exc}")
    return messages


# ---------------------------------------------------------------------------------------------
# Gradient checks
# ---------------------------------------------------------------------------------------------
def gradcheck_functions(functions: Mapping[str, Callable], *, seed: int = 0) -> dict[str, bool]:
    """``torch.autograd.gradcheck`` of each function on seeded float64 inputs.

    Parameters
    ----------
    functions : mapping of str to callable
        ``label -> fn``; ``fn`` takes float64 tensors (see ``inputs``) and returns a tensor.
        Elementwise functions get one input of shape (4, 5) whose entries stay at least 0.1
        away from 0 (a kink such as ReLU's has no derivative for a central difference to
        find); a function whose label contains "batch" gets ``x`` (6, 4), ``gamma`` (4,) and
        ``beta`` (4,).
    seed : int

    Returns
    -------
    dict of str to bool
        Whether the backward pass agrees with central differences (``eps=1e-6``,
        ``atol=1e-5``, ``rtol=1e-3``, gradcheck's defaults).
    """
    g = torch.Generator().manual_seed(seed)
    results = {}
    for label, fn in functions.items():
        if "batch" in label.lower():
            inputs = (torch.randn(6, 4, generator=g, dtype=torch.float64),
                      1.0 + torch.rand(4, generator=g, dtype=torch.float64),
                      torch.randn(4, generator=g, dtype=torch.float64))
        else:
            x = torch.randn(4, 5, generator=g, dtype=torch.float64)
            inputs = (torch.where(x.abs() < 0.1, x.sign() * 0.1 + x, x),)
        inputs = tuple(t.requires_grad_(True) for t in inputs)
        results[label] = bool(torch.autograd.gradcheck(fn, inputs, raise_exception=False))
    return results


# ---------------------------------------------------------------------------------------------
# Training on the digits
# ---------------------------------------------------------------------------------------------
@dataclass
class ComponentsRun:
    """What :func:`train_with_components` measured.

    Attributes
    ----------
    label : str
    train_loss : ndarray, shape (epochs,)
        Mean cross-entropy over each epoch's mini-batches (training mode).
    test_accuracy : ndarray, shape (epochs,)
        Accuracy on the test set after each epoch (evaluation mode).
    seconds : float
        Wall-clock time of the whole training, evaluation included.
    device : str
    """

    label: str
    train_loss: np.ndarray
    test_accuracy: np.ndarray
    seconds: float
    device: str


def train_with_components(activation, batch_norm: type, dropout: type, optimizer: type, *,
                 label: str = "", device: str = "cpu", hidden: int = 128, p: float = 0.2,
                 epochs: int = 15, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                 data: DigitsSplit | None = None, cpu_threads: int | None = 1) -> ComponentsRun:
    """Train ``Linear(64, hidden) -> batch_norm -> activation -> dropout -> Linear(hidden, 10)``.

    Parameters
    ----------
    activation : autograd Function (anything with ``apply``)
    batch_norm : nn.Module class
        Built as ``batch_norm(hidden)``.
    dropout : nn.Module class
        Built as ``dropout(p)``.
    optimizer : Optimizer class
        Built as ``optimizer(model.parameters(), lr=lr)``.
    label : str
    device : str
        ``"cuda"``, ``"mps"`` or ``"cpu"``; the model and the data live there, in float32.
    hidden, p, epochs, batch_size, lr, seed
        The linear layers are initialized by torch with ``torch.manual_seed(seed)`` and the
        mini-batches shuffled with ``numpy.random.default_rng(seed)``, inside
        ``torch.random.fork_rng``: two runs with the same seed start from the same weights and
        see the same batches (the dropout masks differ when the dropouts differ).
    data : DigitsSplit, optional
        Default: ``load_digits_split(seed=0)`` (standardized).
    cpu_threads : int or None
        Torch's CPU threads during the run (restored afterwards). One by default: operations
        this small gain nothing from more, and on a busy machine several threads waiting for
        each other make a run many times slower. None leaves torch's setting alone.

    Returns
    -------
    ComponentsRun
    """
    data = data if data is not None else load_digits_split(seed=0)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]), torch.enable_grad(), threads.cpu_threads(cpu_threads):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, hidden), batch_norm(hidden), FunctionModule(activation),
            dropout(p), torch.nn.Linear(hidden, 10)).to(device)
        opt = optimizer(model.parameters(), lr=lr)
        X = torch.tensor(data.X_train, dtype=torch.float32, device=device)
        y = torch.tensor(data.y_train, dtype=torch.long, device=device)
        X_test = torch.tensor(data.X_test, dtype=torch.float32, device=device)
        y_test = torch.tensor(data.y_test, dtype=torch.long, device=device)
        rng = np.random.default_rng(seed)
        losses, accuracies = [], []
        for _ in range(epochs):
            model.train()
            order = torch.tensor(rng.permutation(len(X)), device=device)
            total = torch.zeros((), device=device)
            batches = 0
            for i in range(0, len(X) - batch_size + 1, batch_size):  # full batches only
                idx = order[i:i + batch_size]
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
                loss.backward()
                opt.step()
                total += loss.detach()
                batches += 1
            losses.append(float(total) / batches)
            model.eval()
            with torch.no_grad():
                accuracies.append(float((model(X_test).argmax(dim=1) == y_test).float().mean()))
    return ComponentsRun(label or _name(optimizer), np.array(losses), np.array(accuracies),
                       time.perf_counter() - start, str(device))


def plot_component_runs(ax_loss, ax_accuracy, runs: list[ComponentsRun], *,
                  messages: list[str] = ()) -> None:
    """Training loss (log scale) and test accuracy per epoch, one line per run."""
    styles = ["-", "--", ":", "-."]
    for i, run in enumerate(runs):
        epochs = np.arange(1, len(run.train_loss) + 1)
        ax_loss.plot(epochs, run.train_loss, styles[i % 4], lw=2, label=run.label)
        ax_accuracy.plot(epochs, run.test_accuracy, styles[i % 4], lw=2, label=run.label)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (cross-entropy)")
    ax_accuracy.set_xlabel("epoch")
    ax_accuracy.set_ylabel("test accuracy")
    for ax in (ax_loss, ax_accuracy):
        if runs:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    show_messages(ax_loss, list(messages))


# ---------------------------------------------------------------------------------------------
# Timing optimizer steps
# ---------------------------------------------------------------------------------------------
def time_optimizer_steps(optimizers: Mapping[str, Callable], *, n_tensors: int = 100,
                         size: int = 1000, device: str = "cpu", repeat: int = 5,
                         number: int = 3, cpu_threads: int | None = 1) -> dict[str, Timing]:
    """Seconds per ``step()`` of each optimizer on ``n_tensors`` float32 tensors of ``size``.

    Every optimizer gets the same parameters and the same fixed gradients; two warm-up steps
    create the state first. On a GPU, the clock waits for the device (``synchronize``). On the
    CPU, torch uses ``cpu_threads`` threads meanwhile (see :func:`train_with_components`).

    Returns
    -------
    dict of str to Timing
        ``label -> timing of one step``.
    """
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else None
    g = torch.Generator().manual_seed(0)
    initial = [torch.randn(size, generator=g) for _ in range(n_tensors)]
    grads = [torch.randn(size, generator=g).to(device) for _ in range(n_tensors)]
    timings = {}
    with threads.cpu_threads(cpu_threads):
        for label, cls in optimizers.items():
            params = [w.clone().to(device).requires_grad_(True) for w in initial]
            for w, dw in zip(params, grads, strict=True):
                w.grad = dw
            opt = cls(params, lr=1e-3)
            timings[label] = measure(opt.step, repeat=repeat, warmup=2, number=number, sync=sync)
    return timings
