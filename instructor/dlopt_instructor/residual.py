"""Residual-block checks (lesson 08): the torch composition the learner's block is compared with,
and named wrong blocks.

The course's block: ``ResidualBlock(features, hidden=None)`` with ``linear1 =
nn.Linear(features, hidden)`` and ``linear2 = nn.Linear(hidden, features)`` (``hidden``
defaults to ``features``), and ``forward(x) = x + linear2(relu(linear1(x)))``: the identity
path plus a residual branch, no activation after the sum (the "identity mapping" form of He et
al., 2016). Every class here has the same constructor and parameter names, so the driver
:func:`dlopt.grading.drivers.residual.run_residual_block` can give them the same weights.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

__all__ = [
    "NoNonlinearity",
    "NoSkip",
    "ReluAfterSum",
    "SkipWithoutGradient",
    "TorchResidualBlock",
]


class TorchResidualBlock(nn.Module):
    """The reference: ``x + linear2(relu(linear1(x)))``, composed of torch's own modules."""

    def __init__(self, features, hidden=None):
        super().__init__()
        hidden = features if hidden is None else hidden
        self.linear1 = nn.Linear(features, hidden)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(hidden, features)

    def branch(self, x):
        return self.linear2(self.relu(self.linear1(x)))

    def forward(self, x):
        return x + self.branch(x)


class NoSkip(TorchResidualBlock):
    """A "residual" block without its residual connection: the branch alone."""

    def forward(self, x):
        return self.branch(x)


class ReluAfterSum(TorchResidualBlock):
    """ReLU applied after the sum (the original ResNet's block), ``relu(x + F(x))``."""

    def forward(self, x):
        return F.relu(x + self.branch(x))


class SkipWithoutGradient(TorchResidualBlock):
    """The right output, but the skip path carries no gradient: ``x.detach() + F(x)``."""

    def forward(self, x):
        return x.detach() + self.branch(x)


class NoNonlinearity(TorchResidualBlock):
    """The branch without its ReLU: ``x + linear2(linear1(x))``, a linear block."""

    def forward(self, x):
        return x + self.linear2(self.linear1(x))
