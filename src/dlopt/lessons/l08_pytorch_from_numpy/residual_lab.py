"""Lesson 08: a deep plain MLP against the same depth with skip connections, on the digits.

Both networks are ``Linear(64, width) -> depth blocks -> Linear(width, 10)``, built from the
learner's ``ResidualBlock``: the residual network uses the blocks as they are,
``x + linear2(relu(linear1(x)))``; the plain network uses the same two layers of each block
without the skip, ``linear2(relu(linear1(x)))``. Both start from the same weights (torch's
default initialization of ``nn.Linear``), see the same mini-batches and are trained by the
learner's optimizer. Reported: the gradient norm of each block's first weight matrix at the
first step (how much gradient reaches each depth), the training loss per step and the test
accuracy.

Nothing here implements a residual block or an optimizer: the learner's classes are passed in.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dlopt.kit.plotting import color_at
from dlopt.kit.threads import cpu_threads

__all__ = ["DepthRun", "block_problem", "depth_experiment", "plot_depth_experiment"]


@dataclass(frozen=True)
class DepthRun:
    """One training run of :func:`depth_experiment`.

    Attributes
    ----------
    label : str
    grad_norms : ndarray, shape (depth,)
        ``linear1.weight.grad``'s norm in each block at the first step, input side first.
    train_loss : ndarray, shape (steps,)
        The mini-batch loss at each step.
    test_accuracy : float
        After the last step.
    """

    label: str
    grad_norms: np.ndarray
    train_loss: np.ndarray
    test_accuracy: float


class _Plain(torch.nn.Module):
    """A block's two layers without its skip connection."""

    def __init__(self, block):
        super().__init__()
        self.linear1, self.linear2 = block.linear1, block.linear2

    def forward(self, x):
        return self.linear2(F.relu(self.linear1(x)))


def block_problem(block_class, name: str = "ResidualBlock") -> str | None:
    """None when ``block_class(4)`` runs forward and backward with ``linear1`` and ``linear2``;
    else a one-line message ("implement `ResidualBlock` first")."""
    try:
        block = block_class(4).double()
        x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            block(x).sum().backward()
        block.linear1, block.linear2  # noqa: B018 - the experiment needs them
    except NotImplementedError:
        return f"implement `{name}` first"
    except Exception as exc:  # noqa: BLE001 - any failure of learner code becomes a message
        return f"`{name}` raised {type(exc).__name__}: {exc}"
    return None


@cpu_threads(1)
def depth_experiment(block_class: type, optimizer: Callable, data, *, depth: int = 16,
                     width: int = 64, steps: int = 200, batch_size: int = 64, lr: float = 0.05,
                     seed: int = 0) -> list[DepthRun]:
    """Train the plain and the residual network of ``depth`` blocks; see the module docstring.

    Parameters
    ----------
    block_class : type
        The learner's ``ResidualBlock``, built as ``block_class(width)``.
    optimizer : callable
        An optimizer class, built as ``optimizer(model.parameters(), lr=lr)``.
    data : DigitsSplit
    depth, width, steps, batch_size : int
    lr : float
    seed : int

    Returns
    -------
    list of DepthRun
        The plain network's run, then the residual network's.
    """
    X = torch.tensor(np.asarray(data.X_train), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(data.y_train), dtype=torch.int64)
    X_test = torch.tensor(np.asarray(data.X_test), dtype=torch.float32)
    y_test = torch.as_tensor(np.asarray(data.y_test), dtype=torch.int64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        residual = torch.nn.Sequential(torch.nn.Linear(X.shape[1], width),
                                       *[block_class(width) for _ in range(depth)],
                                       torch.nn.Linear(width, int(y.max()) + 1))
    plain = copy.deepcopy(residual)
    plain = torch.nn.Sequential(plain[0], *[_Plain(b) for b in plain[1:-1]], plain[-1])
    batches = torch.randint(0, len(X), (steps, batch_size),
                            generator=torch.Generator().manual_seed(seed + 1))
    runs = []
    for label, model in ((f"plain, {depth} blocks", plain),
                         (f"residual, {depth} blocks", residual)):
        opt = optimizer(model.parameters(), lr=lr)
        losses, norms = [], None
        with torch.enable_grad():
            for t, idx in enumerate(batches):
                loss = F.cross_entropy(model(X[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                if t == 0:
                    norms = np.array([float(b.linear1.weight.grad.norm()) for b in model[1:-1]])
                opt.step()
                losses.append(float(loss.detach()))
        with torch.no_grad():
            accuracy = float((model(X_test).argmax(dim=1) == y_test).float().mean())
        runs.append(DepthRun(label, norms, np.array(losses), accuracy))
    return runs


def plot_depth_experiment(ax_norms, ax_loss, runs: list[DepthRun]) -> None:
    """Left: gradient norm per block at the first step (log scale); right: training loss."""
    for i, run in enumerate(runs):
        color = color_at(i)
        ax_norms.semilogy(np.arange(1, len(run.grad_norms) + 1),
                          np.maximum(run.grad_norms, 1e-30), "o-", color=color, label=run.label)
        ax_loss.plot(np.arange(1, len(run.train_loss) + 1), run.train_loss, color=color,
                     lw=1.2, label=run.label)
    ax_norms.set(xlabel="block (1 = next to the input)",
                 ylabel="‖∂L/∂W‖ of the block's linear1 at step 1",
                 title="gradient reaching each depth")
    ax_loss.axhline(np.log(10), color="0.6", lw=0.8, ls=":")
    ax_loss.set(xlabel="step", ylabel="training loss (mini-batch)", title="training")
    for ax in (ax_norms, ax_loss):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
