"""Lesson 11's references and named mistakes: the ring all-reduce, its cost, sharding,
data-parallel and accumulated gradients, and ZeRO's memory per rank.

References (the trusted oracles of the checks):

- :func:`torch_ring_allreduce`: every rank ends with the sum of the ranks' tensors
  (``torch.stack(xs).sum(0)``, what ``dist.all_reduce`` computes; the tests compare it with a
  real gloo all-reduce), and each rank's count of elements sent, read off the ring's message
  schedule (:func:`ring_schedule`, chunk sizes from ``torch.tensor_split``);
- :func:`ring_time_by_steps`: the alpha-beta time of that schedule, step by step;
- :func:`torch_sampler_indices`: ``torch.utils.data.DistributedSampler`` itself;
- :func:`torch_full_batch_gradient`, :func:`torch_accumulated_gradient`: torch's autograd on
  the whole batch (the shards or micro-batches concatenated);
- :func:`torch_zero_memory`: bytes per parameter *measured* on torch tensors (float16
  parameters and gradients, a float32 master copy and ``torch.optim.Adam``'s two moments after
  one step), each component replicated or divided by the world size as ZeRO's stage says.

The named mistakes change one thing in a reference: :func:`simulate_ring` runs the ring on
NumPy buffers (stopped after the reduce-scatter, or averaging at every hop), the others are
written out below. Instructor material, never installed for students.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from dlopt.kit.threads import cpu_threads
from dlopt.lessons.l11_distributed import losses

__all__ = [
    "ZERO_COMPONENTS",
    "measured_bytes_per_parameter",
    "ring_schedule",
    "ring_steps",
    "ring_time_by_steps",
    "sampler_variant",
    "shard_gradients",
    "simulate_ring",
    "torch_accumulated_gradient",
    "torch_full_batch_gradient",
    "torch_micro_gradients",
    "torch_ring_allreduce",
    "torch_sampler_indices",
    "torch_zero_memory",
    "zero_variant",
]


# ---------------------------------------------------------------------------------------------
# The ring all-reduce
# ---------------------------------------------------------------------------------------------
def _chunk_sizes(n: int, k: int) -> list[int]:
    """Sizes of the k chunks of n elements, as torch.tensor_split (and np.array_split) cut them."""
    return [len(c) for c in torch.tensor_split(torch.arange(n), k)]


def ring_steps(k: int, *, all_gather: bool = True) -> list[tuple[str, int]]:
    """The ring's steps in order: ("reduce-scatter", s), then ("all-gather", s), s < k - 1."""
    phases = ("reduce-scatter", "all-gather") if all_gather else ("reduce-scatter",)
    return [(phase, s) for phase in phases for s in range(k - 1)]


def ring_schedule(n: int, k: int, *, all_gather: bool = True) -> list[tuple[str, int, int, int]]:
    """Every message of the ring all-reduce: ``(phase, step, sender, chunk)``.

    Reduce-scatter, steps s = 0 .. k-2: rank r sends chunk (r - s) mod k to rank r + 1, which
    adds it to its own. All-gather, steps s = 0 .. k-2: rank r sends chunk (r + 1 - s) mod k,
    which it holds complete, to rank r + 1, which keeps it.
    """
    first = {"reduce-scatter": 0, "all-gather": 1}
    return [(phase, s, r, (r + first[phase] - s) % k)
            for phase, s in ring_steps(k, all_gather=all_gather) for r in range(k)]


def _sent(n: int, k: int, *, all_gather: bool = True) -> list[int]:
    sizes = _chunk_sizes(n, k)
    sent = [0] * k
    for _, _, sender, chunk in ring_schedule(n, k, all_gather=all_gather):
        sent[sender] += sizes[chunk]
    return sent


@cpu_threads(1)
def torch_ring_allreduce(xs):
    """The reference: ``([sum] * k, sent)``, the sum by torch, the counts from the schedule."""
    total = torch.stack([torch.as_tensor(np.asarray(x, dtype=np.float64)) for x in xs]).sum(0)
    return [total.numpy().copy() for _ in xs], _sent(total.numel(), len(xs))


def simulate_ring(xs, *, all_gather: bool = True, combine: str = "sum", count: str = "ring"):
    """The ring on NumPy buffers, message by message, with one thing changed (a mistake).

    Parameters
    ----------
    all_gather : bool
        False: stop after the reduce-scatter (each rank holds one complete chunk).
    combine : str
        ``"sum"``: a receiver adds the chunk to its own; ``"average"``: it keeps the average
        of the two, (own + received) / 2, at every hop.
    count : str
        ``"ring"``: the elements of every message; ``"reduce-scatter"``: those of the
        reduce-scatter's messages only.
    """
    k = len(xs)
    buffers = [np.array(x, dtype=np.float64) for x in xs]
    pieces = np.array_split(np.arange(buffers[0].size), k)
    sent = [0] * k
    schedule = ring_schedule(buffers[0].size, k, all_gather=all_gather)
    for phase in ("reduce-scatter", "all-gather"):
        for step in range(k - 1):
            messages = [(sender, chunk) for ph, s, sender, chunk in schedule
                        if ph == phase and s == step]
            payload = [buffers[sender][pieces[chunk]].copy() for sender, chunk in messages]
            for (sender, chunk), data in zip(messages, payload, strict=True):
                receiver = (sender + 1) % k
                idx = pieces[chunk]
                if phase == "all-gather":
                    buffers[receiver][idx] = data
                elif combine == "average":
                    buffers[receiver][idx] = (buffers[receiver][idx] + data) / 2
                else:
                    buffers[receiver][idx] += data
                if phase == "reduce-scatter" or count == "ring":
                    sent[sender] += idx.size
    return buffers, sent


def ring_time_by_steps(n_bytes, k, latency, bandwidth) -> float:
    """The alpha-beta time of the ring's schedule, added up step by step.

    Each of the 2 (k - 1) steps (reduce-scatter, then all-gather) moves one chunk of
    n_bytes / k over every link at once: it lasts ``latency + (n_bytes / k) / bandwidth``.
    """
    k = int(k)
    return float(sum(latency + (n_bytes / k) / bandwidth for _ in ring_steps(k)))


# ---------------------------------------------------------------------------------------------
# DistributedSampler
# ---------------------------------------------------------------------------------------------
def torch_sampler_indices(n, rank, world_size, *, drop_last: bool = False) -> np.ndarray:
    """``list(DistributedSampler(range(n), world_size, rank, shuffle=False, drop_last=...))``."""
    sampler = DistributedSampler(range(int(n)), num_replicas=int(world_size), rank=int(rank),
                                 shuffle=False, drop_last=drop_last)
    return np.array(list(sampler), dtype=np.int64)


def sampler_variant(n, rank, world_size, *, split: str = "strided", pad: str = "wrap"):
    """The shard of ``rank`` with one convention changed.

    ``split``: ``"strided"`` (rank, rank + world_size, ...), ``"blocks"`` (contiguous blocks
    of the padded list) or ``"array_split"`` (``np.array_split(np.arange(n), world_size)``,
    no padding). ``pad``: ``"wrap"`` (the first indices again, as torch), ``"none"``,
    ``"new"`` (n, n + 1, ...: indices that do not exist) or ``"last"`` (n - 1 repeated).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"Invalid rank {rank}, rank should be in the interval "
                         f"[0, {world_size - 1}]")
    if split == "array_split":
        return np.array_split(np.arange(n), world_size)[rank].astype(np.int64)
    total = math.ceil(n / world_size) * world_size
    indices = list(range(n))
    extra = total - n
    if pad == "wrap":
        indices = (indices * math.ceil(total / n))[:total]
    elif pad == "new":
        indices += list(range(n, n + extra))
    elif pad == "last":
        indices += [n - 1] * extra
    indices = np.array(indices, dtype=np.int64)
    if split == "blocks":
        per_rank = total // world_size
        return indices[rank * per_rank:(rank + 1) * per_rank]
    return indices[rank::world_size]


# ---------------------------------------------------------------------------------------------
# Gradients through autograd
# ---------------------------------------------------------------------------------------------
def _torch_mean_loss(grad_fn):
    """The torch loss whose gradient ``grad_fn`` (a function of dlopt's lesson 11) computes."""
    if grad_fn is losses.softmax_regression_grad:
        return lambda w, X, y: F.cross_entropy(X @ w, torch.as_tensor(y, dtype=torch.int64))
    if grad_fn is losses.least_squares_grad:
        return lambda w, X, y: 0.5 * ((X @ w - torch.as_tensor(y, dtype=X.dtype)) ** 2).mean()
    raise ValueError(f"no torch loss is known for {grad_fn!r}")


@cpu_threads(1)
def _autograd(w, X, y, grad_fn) -> np.ndarray:
    wt = torch.tensor(np.asarray(w, dtype=np.float64), requires_grad=True)
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float64))
    _torch_mean_loss(grad_fn)(wt, Xt, np.asarray(y)).backward()
    return wt.grad.numpy()


def torch_full_batch_gradient(w, X_shards, y_shards, grad_fn) -> np.ndarray:
    """The reference of ``data_parallel_gradient``: autograd of the mean loss over every shard
    concatenated (equal shards: the large batch they form)."""
    return _autograd(w, np.concatenate(X_shards), np.concatenate(y_shards), grad_fn)


def shard_gradients(w, X_shards, y_shards, grad_fn) -> list[np.ndarray]:
    """Each shard's own mean-loss gradient, by autograd (what each rank computes locally)."""
    return [_autograd(w, X, y, grad_fn) for X, y in zip(X_shards, y_shards, strict=True)]


def torch_accumulated_gradient(w, micro_batches, grad_fn) -> np.ndarray:
    """The reference of ``accumulated_gradient``: autograd on every micro-batch concatenated."""
    X = np.concatenate([X for X, _ in micro_batches])
    y = np.concatenate([y for _, y in micro_batches])
    return _autograd(w, X, y, grad_fn)


def torch_micro_gradients(w, micro_batches, grad_fn) -> list[np.ndarray]:
    """Each micro-batch's mean-loss gradient, by autograd."""
    return [_autograd(w, X, y, grad_fn) for X, y in micro_batches]


# ---------------------------------------------------------------------------------------------
# ZeRO
# ---------------------------------------------------------------------------------------------
#: Model state of mixed-precision Adam, by component: (label, first ZeRO stage that shards it).
ZERO_COMPONENTS = (("float16 parameters", 3), ("float16 gradients", 2),
                   ("float32 master parameters", 1), ("Adam exp_avg (float32)", 1),
                   ("Adam exp_avg_sq (float32)", 1))


@cpu_threads(1)
def measured_bytes_per_parameter() -> dict[str, float]:
    """Bytes per parameter of each ZeRO component, measured on torch's own tensors.

    A small float16 layer gets float16 gradients from a backward pass; a float32 master copy
    of its parameters takes one ``torch.optim.Adam`` step, after which the optimizer's state
    holds ``exp_avg`` and ``exp_avg_sq``. Each tensor's ``nbytes`` divided by the parameter
    count.
    """
    layer = torch.nn.Linear(4, 3).to(torch.float16)
    layer(torch.ones(2, 4, dtype=torch.float16)).sum().backward()
    params = list(layer.parameters())
    n = sum(p.numel() for p in params)
    master = [p.detach().float().requires_grad_() for p in params]
    for m, p in zip(master, params, strict=True):
        m.grad = p.grad.float()
    adam = torch.optim.Adam(master)
    adam.step()
    state = [adam.state[m] for m in master]
    measured = {
        "float16 parameters": sum(p.nbytes for p in params),
        "float16 gradients": sum(p.grad.nbytes for p in params),
        "float32 master parameters": sum(m.nbytes for m in master),
        "Adam exp_avg (float32)": sum(s["exp_avg"].nbytes for s in state),
        "Adam exp_avg_sq (float32)": sum(s["exp_avg_sq"].nbytes for s in state),
    }
    return {label: nbytes / n for label, nbytes in measured.items()}


def torch_zero_memory(n_params, world_size, stage) -> float:
    """The reference of ``zero_memory_per_rank``: measured bytes per parameter, each component
    divided by ``world_size`` from the ZeRO stage that shards it on."""
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"stage must be 0, 1, 2 or 3, got {stage}")
    per_parameter = measured_bytes_per_parameter()
    return float(sum(per_parameter[label] * n_params / (world_size if stage >= first else 1)
                     for label, first in ZERO_COMPONENTS))


def zero_variant(n_params, world_size, stage, *, params: float = 2, grads: float = 2,
                 optimizer: float = 12, shard_grads_from: int = 2,
                 shard_params_from: int = 3) -> float:
    """ZeRO's bytes per rank with one convention changed (bytes per component, or the stage
    from which gradients or parameters are sharded)."""
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"stage must be 0, 1, 2 or 3, got {stage}")
    k = world_size
    return float(params * n_params / (k if stage >= shard_params_from else 1)
                 + grads * n_params / (k if stage >= shard_grads_from else 1)
                 + optimizer * n_params / (k if stage >= 1 else 1))
