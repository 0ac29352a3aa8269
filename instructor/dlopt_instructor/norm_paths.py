"""Wrong backward passes of a normalization layer: autograd with one gradient path cut.

Batch norm (lesson 06) normalizes each feature over the batch (``dim=0``); layer norm
normalizes each example over its features (``dim=-1``). Their classic backward mistakes are the
same four: the mean treated as a constant, the variance treated as a constant, both (evaluation
mode's gradient), and the variance differentiated as the unbiased ``sum / (n - 1)``. Each is
autograd through the forward pass with that path ``detach``-ed, so the mistakes are torch's
arithmetic, not hand-written formulas.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from dlopt.kit.threads import cpu_threads

__all__ = ["path_mistakes", "to_array", "to_tensor"]


def to_tensor(a, requires_grad: bool = False) -> torch.Tensor:
    """A float64 tensor of ``a`` (a copy), for the normalization references and mistakes."""
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def to_array(t: torch.Tensor) -> np.ndarray:
    """A float64 NumPy copy of ``t``, detached."""
    return t.detach().numpy().copy()


@cpu_threads(1)
def _autograd_variant(dout, cache, *, dim: int, keep_mean=True, keep_var=True, bessel=False):
    """Gradients of the layer normalizing over ``dim``, with some paths cut or changed."""
    with torch.enable_grad():
        x = to_tensor(cache["xc"], requires_grad=True)
        gamma = to_tensor(cache["gamma"], requires_grad=True)
        beta = torch.zeros_like(gamma, requires_grad=True)
        n = x.shape[dim]
        mean = x.mean(dim=dim, keepdim=True)
        centred = x - (mean if keep_mean else mean.detach())
        var = torch.var(centred, dim=dim, correction=0, keepdim=True)
        if bessel:  # the value of the biased variance, the gradient of the unbiased one
            unbiased = var * n / (n - 1)
            var = var.detach() + unbiased - unbiased.detach()
        if not keep_var:
            var = var.detach()
        out = gamma * centred * torch.rsqrt(var + cache["eps"]) + beta
        out.backward(to_tensor(dout))
    return tuple(to_array(t.grad) for t in (x, gamma, beta))


def path_mistakes(dim: int) -> dict[str, Callable]:
    """The four path mistakes of a layer normalizing over ``dim``, by name.

    ``no_mean_path``, ``no_variance_path``, ``statistics_constant`` and ``bessel_in_backward``;
    each is ``fn(dout, cache) -> (dx, dgamma, dbeta)``, the course's backward interface, with
    ``dgamma`` and ``dbeta`` right.
    """
    variant = functools.partial(_autograd_variant, dim=dim)
    return {
        "no_mean_path": functools.partial(variant, keep_mean=False),
        "no_variance_path": functools.partial(variant, keep_var=False),
        "statistics_constant": functools.partial(variant, keep_mean=False, keep_var=False),
        "bessel_in_backward": functools.partial(variant, bessel=True),
    }
