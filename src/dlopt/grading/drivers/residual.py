"""Driver of lesson 08's ``ResidualBlock`` check: one forward and backward pass, reported as data.

The block has the course's interface: ``ResidualBlock(features, hidden=None)`` is an
``nn.Module`` with two ``nn.Linear`` submodules ``linear1`` (features -> hidden) and ``linear2``
(hidden -> features). The driver builds it in float64, overwrites those four parameters with
seeded values (so that the learner's block and the reference start from the same weights,
whatever their initialization), runs a seeded input through it and back, and returns arrays.
Nothing here computes a residual block.
"""

from __future__ import annotations

import numpy as np
import torch

from dlopt.kit.threads import cpu_threads

__all__ = ["PARAMETERS", "run_residual_block"]

DTYPE = torch.float64

#: The parameters a residual block must register, by their names in ``named_parameters()``.
PARAMETERS = ("linear1.bias", "linear1.weight", "linear2.bias", "linear2.weight")


def _np(t) -> np.ndarray | None:
    return None if t is None else t.detach().to("cpu", DTYPE).numpy().copy()


@cpu_threads(1)
def run_residual_block(module, features: int, hidden: int | None = None, *,
                       batch_shape=(6,), seed: int = 0, device: str = "cpu") -> dict:
    """Forward and backward pass of a residual block with seeded weights.

    Parameters
    ----------
    module : nn.Module subclass
        Built as ``module(features)`` when ``hidden`` is None, else ``module(features, hidden)``.
    features : int
    hidden : int, optional
    batch_shape : tuple of int
        Leading axes of the input, whose shape is ``(*batch_shape, features)``.
    seed : int
    device : str

    Returns
    -------
    dict
        ``"parameters"``: the sorted names of the block's registered parameters;
        ``"output"``: the output, of the input's shape; ``"dx"``: the gradient that reached the
        input for a seeded ``grad_output``; ``"grads"``: ``{name: gradient}`` for the four
        parameters of :data:`PARAMETERS`; ``"input_unchanged"``: whether the input still holds
        its values.

    Raises
    ------
    ValueError
        If the block does not register the parameters of :data:`PARAMETERS` with the shapes of
        ``nn.Linear(features, hidden)`` and ``nn.Linear(hidden, features)``.
    """
    width = features if hidden is None else hidden
    block = module(features) if hidden is None else module(features, hidden)
    block = block.to(device=device, dtype=DTYPE)
    params = dict(block.named_parameters())
    shapes = {"linear1.weight": (width, features), "linear1.bias": (width,),
              "linear2.weight": (features, width), "linear2.bias": (features,)}
    for name, shape in shapes.items():
        if name not in params:
            raise ValueError(f"the block has no parameter {name!r}: keep the two layers as "
                             f"attributes self.linear1 and self.linear2, each a torch.nn.Linear "
                             f"(registered parameters: {sorted(params)})")
        if tuple(params[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(params[name].shape)}, expected {shape}: "
                             f"linear1 is Linear({features}, {width}), linear2 is "
                             f"Linear({width}, {features})")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in PARAMETERS:
            scale = 0.5 if name.endswith("weight") else 0.3
            params[name].copy_(scale * torch.randn(*shapes[name], generator=g, dtype=DTYPE))
    x = torch.randn(*batch_shape, features, generator=g, dtype=DTYPE).to(device)
    grad_output = torch.randn(*batch_shape, features, generator=g, dtype=DTYPE).to(device)
    x.requires_grad_(True)
    before = x.detach().clone()
    block.train()
    with torch.enable_grad():
        y = block(x)
        y.backward(grad_output)
    return {
        "parameters": sorted(params),
        "output": _np(y),
        "dx": _np(x.grad),
        "grads": {name: _np(params[name].grad) for name in PARAMETERS},
        "input_unchanged": bool(torch.equal(x.detach(), before)),
    }
