"""Torch's own components, and deliberately broken variants of them, for lesson 08's checks.

A check of lesson 08 runs the learner's class (an autograd ``Function``, an ``nn.Module``, a
``torch.optim.Optimizer`` subclass) through a driver of
:mod:`dlopt.grading.drivers.torch_modules` and compares the plain data it reports with what
torch's own class reports through the same driver. The classic mistakes it names are built
here **from torch's classes**, never from the learner's algorithms: a wrong hyperparameter, a
detached path in autograd, a wrapper that drops the state from ``state_dict`` or restores the
parameters after the step. Nothing here is an answer to an exercise: each variant is torch,
changed in one visible place.

References
    :class:`TorchFunction` (``apply`` is a torch function), :class:`TorchBatchNorm`.
Elementwise functions
    :func:`function_variant` builds an autograd ``Function`` from a forward and a backward
    (on :func:`dlopt.kit.torch_bridge.autograd_function`, the course's one bridge).
Batch norm (the function)
    :data:`BATCH_NORM_FUNCTION_MISTAKES`, see :func:`batch_norm_function_mistake`.
Batch norm and dropout (the modules)
    :func:`momentum_reversed`, :class:`BiasedRunningVar`, :class:`EvalUsesBatchStatistics`,
    :class:`RunningStatisticsNeverUpdated`, :func:`keep_probability`, :class:`UnscaledDropout`,
    :class:`DropoutInEval`.
Optimizers
    :func:`with_hyperparameters`, :func:`ignores_group_lr`, :func:`decay_not_scaled_by_lr`,
    :func:`loses_state`, :func:`never_updates`, :func:`updates_with_autograd_on`,
    :func:`ignores_closure`, :func:`closure_under_no_grad`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from dlopt.kit.learner import function_name
from dlopt.kit.torch_bridge import autograd_function

__all__ = [
    "BATCH_NORM_FUNCTION_MISTAKES",
    "BiasedRunningVar",
    "DropoutInEval",
    "EvalUsesBatchStatistics",
    "RunningStatisticsNeverUpdated",
    "TorchBatchNorm",
    "TorchFunction",
    "UnscaledDropout",
    "batch_norm_function_mistake",
    "closure_under_no_grad",
    "decay_not_scaled_by_lr",
    "function_variant",
    "ignores_closure",
    "ignores_group_lr",
    "keep_probability",
    "loses_state",
    "momentum_reversed",
    "never_updates",
    "updates_with_autograd_on",
    "with_hyperparameters",
]


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------
class TorchFunction:
    """Something with ``apply`` like an autograd ``Function``, computed by a torch function.

    ``TorchFunction(torch.sigmoid).apply(x)`` is ``torch.sigmoid(x)``; autograd differentiates
    it. The reference for a learner's ``Sigmoid`` in
    :func:`dlopt.grading.drivers.torch_modules.run_function`.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], name: str | None = None):
        self.fn = fn
        self.__name__ = name or getattr(fn, "__name__", "torch function")

    def apply(self, *args):
        return self.fn(*args)

    def __repr__(self):
        return f"TorchFunction({self.__name__})"


class TorchBatchNorm:
    """``apply(x, gamma, beta, eps)``: training-mode batch norm by ``F.batch_norm``, autograd's
    backward. The reference for a learner's ``BatchNormFunction``."""

    __name__ = "torch.nn.functional.batch_norm"

    @staticmethod
    def apply(x, gamma, beta, eps=1e-5):
        return F.batch_norm(x, None, None, gamma, beta, training=True, momentum=0.0, eps=eps)


def function_variant(forward: Callable, backward: Callable, name: str = "variant"):
    """An autograd ``Function`` from two torch callables (used to build wrong variants).

    Built on the course's one bridge, :func:`dlopt.kit.torch_bridge.autograd_function`, with
    the cache holding the input and the output.

    Parameters
    ----------
    forward : callable
        ``forward(x) -> y`` on a tensor.
    backward : callable
        ``backward(x, y, grad_output) -> grad_input``, tensors of ``x``'s shape.
    name : str
        The class name (shown in messages).

    Returns
    -------
    type
        A subclass of ``torch.autograd.Function``: ``cls.apply(x)``.
    """

    def forward_with_cache(x):
        y = forward(x)
        return y, (x, y)

    def backward_from_cache(grad_output, cache):
        x, y = cache
        return backward(x, y, grad_output)

    return autograd_function(forward_with_cache, backward_from_cache, name=name,
                             blame=(function_name(forward), function_name(backward)))


# ---------------------------------------------------------------------------------------------
# Batch norm, the function: wrong backward passes by autograd with a path cut
# ---------------------------------------------------------------------------------------------
def _straight_through(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, the gradient of ``surrogate`` in the backward pass."""
    return value.detach() + surrogate - surrogate.detach()


def _batch_norm_variant(kind: str):
    def apply(x, gamma, beta, eps=1e-5):
        mean = x.mean(dim=0)
        var = x.var(dim=0, unbiased=(kind == "unbiased_variance"))
        if kind in ("statistics_constant", "variance_constant"):
            var = var.detach()
        if kind == "statistics_constant":
            mean = mean.detach()
        x_hat = (x - mean) / torch.sqrt(var + eps)
        if kind == "swapped_gamma_beta":
            # the right output; gamma receives sum(dy), beta receives sum(dy * x_hat)
            surrogate = x_hat * gamma.detach() + beta.detach() + gamma + x_hat.detach() * beta
            return _straight_through(x_hat * gamma + beta, surrogate)
        return x_hat * gamma + beta

    return apply


#: Wrong batch-norm functions, by name: what each one gets wrong.
BATCH_NORM_FUNCTION_MISTAKES = {
    "statistics_constant": "mean and variance treated as constants in backward",
    "variance_constant": "variance treated as a constant in backward",
    "swapped_gamma_beta": "the gradients of gamma and beta swapped",
    "unbiased_variance": "normalized with the unbiased variance (divides by N - 1)",
}


def batch_norm_function_mistake(kind: str):
    """An object with ``apply(x, gamma, beta, eps)`` that makes one classic batch-norm mistake.

    Built on torch's autograd: ``"statistics_constant"`` detaches the batch mean and variance,
    ``"variance_constant"`` only the variance, ``"swapped_gamma_beta"`` routes each gradient to
    the other parameter, ``"unbiased_variance"`` normalizes with ``x.var(unbiased=True)``.
    """
    if kind not in BATCH_NORM_FUNCTION_MISTAKES:
        raise ValueError(f"unknown mistake {kind!r}; one of {sorted(BATCH_NORM_FUNCTION_MISTAKES)}")
    return TorchFunction(_batch_norm_variant(kind), name=f"batch norm ({kind})")


# ---------------------------------------------------------------------------------------------
# Batch norm and dropout, the modules
# ---------------------------------------------------------------------------------------------
def momentum_reversed(module: type = torch.nn.BatchNorm1d) -> type:
    """``module`` built with ``momentum=1 - momentum`` (the other framework's convention)."""

    class MomentumReversed(module):
        def __init__(self, num_features, eps=1e-5, momentum=0.1):
            super().__init__(num_features, eps=eps, momentum=1.0 - momentum)

    return MomentumReversed


class BiasedRunningVar(torch.nn.BatchNorm1d):
    """Torch's batch norm whose running variance averages the *biased* batch variance.

    The running statistics are updated by ``F.batch_norm`` itself, fed a batch shrunk towards
    its mean by ``sqrt((N - 1) / N)``: its unbiased variance is the original biased one.
    """

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        with torch.no_grad():
            n = x.shape[0]
            mean = x.mean(dim=0)
            shrunk = mean + (x - mean) * math.sqrt((n - 1) / n)
            F.batch_norm(shrunk, self.running_mean, self.running_var, training=True,
                         momentum=self.momentum, eps=self.eps)
        return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)


class EvalUsesBatchStatistics(torch.nn.BatchNorm1d):
    """Torch's batch norm that normalizes with the batch's statistics in evaluation mode too."""

    def forward(self, x):
        if self.training:
            return super().forward(x)
        return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)


class RunningStatisticsNeverUpdated(torch.nn.BatchNorm1d):
    """Torch's batch norm that never updates ``running_mean`` and ``running_var`` in training."""

    def forward(self, x):
        if self.training:
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True,
                                eps=self.eps)
        return super().forward(x)


def keep_probability(module: type = torch.nn.Dropout) -> type:
    """``module`` built with ``1 - p``: ``p`` read as the probability to *keep* a unit."""

    class KeepProbability(module):
        def __init__(self, p=0.5):
            super().__init__(1.0 - p)

    return KeepProbability


class UnscaledDropout(torch.nn.Dropout):
    """Torch's dropout without the ``1 / (1 - p)`` scaling of the kept units in training."""

    def forward(self, x):
        if not self.training:
            return x
        return F.dropout(x, self.p, training=True) * (1.0 - self.p)


class DropoutInEval(torch.nn.Dropout):
    """Torch's dropout that keeps dropping units in evaluation mode."""

    def forward(self, x):
        return F.dropout(x, self.p, training=True)


# ---------------------------------------------------------------------------------------------
# Optimizers: wrappers around a torch.optim class
# ---------------------------------------------------------------------------------------------
def with_hyperparameters(optimizer: type, **overrides) -> type:
    """``optimizer`` that ignores the given constructor arguments and uses ``overrides``.

    ``with_hyperparameters(torch.optim.SGD, nesterov=False)`` is SGD that never looks ahead;
    ``with_hyperparameters(torch.optim.Adam, amsgrad=False)`` ignores ``amsgrad=True``.
    """

    class WithHyperparameters(optimizer):
        def __init__(self, params, **hyperparameters):
            super().__init__(params, **{**hyperparameters, **overrides})

    WithHyperparameters.__name__ = f"{optimizer.__name__}{overrides}"
    return WithHyperparameters


def ignores_group_lr(optimizer: type) -> type:
    """``optimizer`` whose parameter groups all use the constructor's ``lr`` (``defaults``)."""

    class IgnoresGroupLr(optimizer):
        def __init__(self, params, **hyperparameters):
            super().__init__(params, **hyperparameters)
            for group in self.param_groups:
                group["lr"] = self.defaults["lr"]

    return IgnoresGroupLr


def decay_not_scaled_by_lr(optimizer: type = torch.optim.AdamW) -> type:
    """``optimizer`` with decoupled weight decay ``w -= weight_decay * w`` instead of
    ``w -= lr * weight_decay * w`` (each group's ``weight_decay`` divided by its ``lr``)."""

    class DecayNotScaledByLr(optimizer):
        def __init__(self, params, **hyperparameters):
            super().__init__(params, **hyperparameters)
            for group in self.param_groups:
                group["weight_decay"] = group["weight_decay"] / group["lr"]

    return DecayNotScaledByLr


def loses_state(optimizer: type) -> type:
    """``optimizer`` whose ``state_dict()`` carries no per-parameter state.

    This is what happens when an optimizer keeps its buffers anywhere but ``self.state`` (a
    global dict, an attribute, a dict keyed by ``id(w)``): after ``load_state_dict`` the new
    optimizer starts from fresh buffers and step 0.
    """

    class LosesState(optimizer):
        def state_dict(self):
            saved = super().state_dict()
            saved["state"] = {}
            return saved

    return LosesState


def never_updates(optimizer: type) -> type:
    """``optimizer`` whose step computes everything (state included) but leaves the parameters
    as they were: what ``w = w - lr * ...`` or an out-of-place ``torch._foreach_add`` does."""

    class NeverUpdates(optimizer):
        def step(self, closure=None):
            with torch.no_grad():
                before = [w.clone() for group in self.param_groups for w in group["params"]]
            loss = super().step(closure)
            with torch.no_grad():
                params = [w for group in self.param_groups for w in group["params"]]
                for w, old in zip(params, before, strict=True):
                    w.copy_(old)
            return loss

    return NeverUpdates


def updates_with_autograd_on(optimizer: type) -> type:
    """``optimizer`` whose step changes a parameter in place while autograd records (no
    ``@torch.no_grad()``): torch refuses with a RuntimeError about a leaf Variable."""

    class UpdatesWithAutogradOn(optimizer):
        def step(self, closure=None):
            for group in self.param_groups:
                for w in group["params"]:
                    if w.grad is not None:
                        w.sub_(0.0)  # raises: a leaf that requires grad, changed in place
            return super().step(closure)

    return UpdatesWithAutogradOn


def ignores_closure(optimizer: type) -> type:
    """``optimizer`` whose ``step(closure)`` never calls the closure (and returns None)."""

    class IgnoresClosure(optimizer):
        def step(self, closure=None):
            return super().step()

    return IgnoresClosure


def closure_under_no_grad(optimizer: type) -> type:
    """``optimizer`` whose step calls the closure with autograd off (inside its own
    ``torch.no_grad()``, without ``torch.enable_grad()`` around the closure)."""

    class ClosureUnderNoGrad(optimizer):
        def step(self, closure=None):
            if closure is not None:
                with torch.no_grad():
                    closure()
            return super().step(closure)

    return ClosureUnderNoGrad
