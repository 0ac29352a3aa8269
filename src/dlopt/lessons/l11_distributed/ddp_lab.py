"""Lesson 11: real data parallelism on this machine, checked against one process.

k processes (gloo, :func:`~dlopt.lessons.l11_distributed.launch.launch`) train the same small
digits MLP with ``torch.nn.parallel.DistributedDataParallel``: each rank draws its examples
with ``torch.utils.data.DistributedSampler`` (shuffled, ``set_epoch`` at every epoch), takes
``global_batch / k`` of them per step, and DDP all-reduces the gradients (their average) during
the backward pass. One process then trains the same initial network on the **combined** batch
of every step (the k ranks' examples together, ``global_batch`` of them): the parameters must
agree, to float32's rounding.

Variants, each a classic way of breaking that equality (:data:`VARIANTS`):

- ``"DDP"``: as above;
- ``"sum without /k"``: a DDP communication hook that all-reduces the gradients with a sum and
  does not divide by k (every step is k times too large);
- ``"BatchNorm per rank"``: the MLP with a ``BatchNorm1d`` layer; each rank normalizes with
  the mean and variance of its own ``global_batch / k`` examples, not of the combined batch
  (``SyncBatchNorm`` would share them; it needs GPUs);
- ``"set_epoch forgotten"``: the sampler's ``set_epoch`` is never called, so every epoch
  visits the examples in the same order.

Every variant keeps the k replicas identical (they all apply the same all-reduced gradient):
DDP keeps them in step even when the step is wrong. The one-process reference is always the
correct training (with ``set_epoch``, the average, and batch norm over the combined batch).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from dlopt.kit.data import DigitsSplit
from dlopt.kit.learner import probe
from dlopt.kit.threads import cpu_threads
from dlopt.lessons.l11_distributed.launch import launch

__all__ = ["VARIANTS", "DDPConfig", "DDPResult", "data_parallel_runs", "make_model",
           "rank_batches", "shard_agreement", "single_process_reference"]

VARIANTS = ("DDP", "sum without /k", "BatchNorm per rank", "set_epoch forgotten")


@dataclass(frozen=True)
class DDPConfig:
    """The training every run does: ``epochs`` epochs of SGD on the digits' training split,
    ``global_batch`` examples per step in all (``global_batch / k`` per rank, the last
    incomplete batch of each epoch dropped), ``lr``, a 64 -> ``hidden`` -> 10 ReLU MLP."""

    epochs: int = 2
    global_batch: int = 256
    lr: float = 1.0
    hidden: int = 32
    seed: int = 0


def make_model(batch_norm: bool, hidden: int = 32, seed: int = 0) -> torch.nn.Sequential:
    """64 -> hidden (-> BatchNorm1d) -> ReLU -> 10, float32, torch's default initialization."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        layers: list[torch.nn.Module] = [torch.nn.Linear(64, hidden)]
        if batch_norm:
            layers.append(torch.nn.BatchNorm1d(hidden))
        layers += [torch.nn.ReLU(), torch.nn.Linear(hidden, 10)]
    finally:
        torch.random.set_rng_state(state)
    return torch.nn.Sequential(*layers)


def rank_batches(n: int, world_size: int, rank: int, epoch: int, per_rank: int, *,
                 set_epoch: bool = True, seed: int = 0) -> list[list[int]]:
    """Rank ``rank``'s mini-batches of one epoch, from a shuffled DistributedSampler.

    The sampler's indices for the epoch, cut into batches of ``per_rank`` (the last, shorter
    one dropped). Without ``set_epoch`` every epoch gets epoch 0's order.
    """
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=seed)
    if set_epoch:
        sampler.set_epoch(epoch)
    indices = list(sampler)
    return [indices[i:i + per_rank] for i in range(0, len(indices) - per_rank + 1, per_rank)]


def _sum_hook(state, bucket):
    """A DDP communication hook: all-reduce (sum) the bucket, and do NOT divide by k."""
    import torch.distributed as dist

    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def _params(model: torch.nn.Module) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in model.parameters()]


def _state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {name: t.detach().numpy().copy() for name, t in model.state_dict().items()}


def _train_rank(rank: int, world_size: int, X: torch.Tensor, y: torch.Tensor,
                config: DDPConfig, variants: Sequence[str]) -> dict:
    """In a child: every variant's DDP training; rank's final parameters and sampler orders."""
    from torch.nn.parallel import DistributedDataParallel

    out = {}
    for variant in variants:
        model = make_model(variant == "BatchNorm per rank", config.hidden, config.seed)
        ddp = DistributedDataParallel(model)  # broadcasts rank 0's parameters to every rank
        if variant == "sum without /k":
            ddp.register_comm_hook(None, _sum_hook)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=config.lr)
        orders = []
        for epoch in range(config.epochs):
            sampler = DistributedSampler(range(len(X)), num_replicas=world_size, rank=rank,
                                         shuffle=True, seed=config.seed)
            if variant != "set_epoch forgotten":
                sampler.set_epoch(epoch)
            orders.append(np.array(list(sampler)))
            per_rank = config.global_batch // world_size
            for batch in rank_batches(len(X), world_size, rank, epoch, per_rank,
                                      set_epoch=variant != "set_epoch forgotten",
                                      seed=config.seed):
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(ddp(X[batch]), y[batch]).backward()  # DDP all-reduces here
                optimizer.step()
        out[variant] = {"params": _params(model), "state": _state(model), "orders": orders}
    return out


@cpu_threads(1)
def single_process_reference(X: torch.Tensor, y: torch.Tensor, world_size: int,
                             config: DDPConfig, batch_norm: bool) -> torch.nn.Sequential:
    """One process, the same steps on the combined batches: at every step the examples of all
    ``world_size`` ranks (their sampler's batches, with ``set_epoch``) in one batch."""
    model = make_model(batch_norm, config.hidden, config.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    per_rank = config.global_batch // world_size
    for epoch in range(config.epochs):
        ranks = [rank_batches(len(X), world_size, r, epoch, per_rank, seed=config.seed)
                 for r in range(world_size)]
        for step in range(len(ranks[0])):
            combined = [i for batches in ranks for i in batches[step]]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(X[combined]), y[combined]).backward()
            optimizer.step()
    return model


@cpu_threads(1)
def _accuracy(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(X).argmax(1) == y).double().mean())


@dataclass
class DDPResult:
    """What k processes did, against the one-process reference.

    Attributes
    ----------
    world_size : int
    seconds : float
        Wall clock of the launch (forking, joining the group, training every variant).
    drift : dict
        Variant -> largest |parameter difference| between rank 0 and the reference.
    replica_spread : dict
        Variant -> largest |parameter difference| between any rank and rank 0.
    same_order : dict
        Variant -> whether rank 0 visited the examples in the same order in every epoch.
    test_accuracy : dict
        Variant -> rank 0's test accuracy; ``"reference"`` -> the reference's.
    orders : dict
        Rank -> that rank's sampler indices, one array per epoch ("DDP" variant).
    """

    world_size: int
    seconds: float
    drift: dict[str, float] = field(default_factory=dict)
    replica_spread: dict[str, float] = field(default_factory=dict)
    same_order: dict[str, bool] = field(default_factory=dict)
    test_accuracy: dict[str, float] = field(default_factory=dict)
    orders: dict[int, list[np.ndarray]] = field(default_factory=dict)


def _largest_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def data_parallel_runs(digits: DigitsSplit, world_sizes: Sequence[int] = (1, 2, 4), *,
                       config: DDPConfig = DDPConfig(), variants: Sequence[str] = VARIANTS,
                       timeout: float = 60.0) -> dict[int, DDPResult]:
    """Train with k = each of ``world_sizes`` gloo processes, every variant, and compare.

    Raises
    ------
    GlooUnavailable
        Where gloo cannot start, or a run fails or times out (the message says which).
    """
    X = torch.tensor(digits.X_train, dtype=torch.float32)
    y = torch.tensor(digits.y_train, dtype=torch.int64)
    X_test = torch.tensor(digits.X_test, dtype=torch.float32)
    y_test = torch.tensor(digits.y_test, dtype=torch.int64)
    results = {}
    for k in world_sizes:
        start = time.perf_counter()
        ranks = launch(_train_rank, k, X, y, config, tuple(variants), timeout=timeout)
        result = DDPResult(k, time.perf_counter() - start)
        references = {bn: single_process_reference(X, y, k, config, bn) for bn in (False, True)}
        result.test_accuracy["reference"] = _accuracy(references[False], X_test, y_test)
        for variant in variants:
            reference = references[variant == "BatchNorm per rank"]
            mine = ranks[0][variant]["params"]
            result.drift[variant] = _largest_difference(mine, _params(reference))
            result.replica_spread[variant] = max(
                _largest_difference(r[variant]["params"], mine) for r in ranks)
            orders = ranks[0][variant]["orders"]
            result.same_order[variant] = all(np.array_equal(o, orders[0]) for o in orders)
            model = make_model(variant == "BatchNorm per rank", config.hidden, config.seed)
            model.load_state_dict({name: torch.from_numpy(value)
                                   for name, value in ranks[0][variant]["state"].items()})
            result.test_accuracy[variant] = _accuracy(model, X_test, y_test)
        if "DDP" in variants:
            result.orders = {r: ranks[r]["DDP"]["orders"] for r in range(k)}
        results[k] = result
    return results


def shard_agreement(results: dict[int, DDPResult], shard_fn: Callable, n: int,
                    seed: int = 0) -> tuple[int, int, str | None]:
    """Whether the learner's ``shard_indices`` reproduces what every rank's sampler gave.

    A shuffled DistributedSampler draws ``perm = torch.randperm(n)`` (seeded by seed + epoch),
    then takes positions exactly as the unshuffled one does: its indices are
    ``perm[shard_indices(n, rank, k)]``.

    Returns
    -------
    agreeing, total : int
        How many (k, rank, epoch) orders the learner's function reproduced, of how many.
    problem : str or None
        ``"implement `shard_indices` first"`` (or what else went wrong), else None.
    """
    agreeing = total = 0
    for k, result in results.items():
        for rank, orders in result.orders.items():
            positions, problem = probe(shard_fn, n, rank, k)
            if problem:
                return 0, 0, problem
            for epoch, order in enumerate(orders):
                perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
                total += 1
                try:
                    agreeing += bool(np.array_equal(perm.numpy()[np.asarray(positions)], order))
                except (IndexError, ValueError, TypeError):
                    pass
    return agreeing, total, None
