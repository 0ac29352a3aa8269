"""Lesson 09: the optimizer step as a memory-bound kernel, bytes moved, bandwidth, roofline.

- :func:`trace_traffic` runs a function under a ``TorchDispatchMode`` and records, for every
  tensor that existed before the call (parameters, gradients, optimizer state), whether an
  operation read it and whether one wrote it; it also adds up every operation's own reads and
  writes, temporaries included (what an unfused implementation really moves).
- :func:`torch_adam_step_bytes` is the trusted reference of lesson 09's ``adam_step_bytes``:
  it traces one step of ``torch.optim.Adam`` and counts the persistent tensors torch reads
  and writes, so the count comes from torch's own implementation, not from our formula.
- :func:`copy_timing`, :func:`inplace_timing` and :func:`matmul_timing` measure what a device
  can do: a large ``copy_`` and a large in-place update (its bandwidth) and a large matrix
  product (its arithmetic throughput). On a CPU, a copy into a buffer that is not in the cache
  first reads the destination's lines (*write-allocate*), so it moves three bytes for every two
  it is credited with; an in-place update, like an optimizer step, does not pay that.
- :func:`optimizer_step_timing` times ``step()`` of an optimizer on ``n_params`` parameters.
- :func:`plot_roofline` draws the roofline model with measured points.

Conversions to GB/s and the roofline arithmetic are the learner's (lesson 09's exercises);
the functions here return bytes, flops and :class:`dlopt.kit.timing.Timing` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dlopt.kit.timing import Timing
from dlopt.lessons.l09_performance.gpu_timing import measure_device

__all__ = [
    "Traffic",
    "copy_timing",
    "inplace_timing",
    "matmul_timing",
    "optimizer_step_timing",
    "plot_roofline",
    "torch_adam_step_bytes",
    "trace_traffic",
    "traced_adam_traffic",
]


@dataclass(frozen=True)
class Traffic:
    """Which persistent tensors a call read and wrote, and what its operations moved.

    Attributes
    ----------
    read : tuple of str
        Names of the persistent tensors some operation read.
    written : tuple of str
        Names of the persistent tensors some operation wrote.
    ideal_bytes : int
        Each tensor in ``read`` read once and each in ``written`` written once: the bytes a
        single fused kernel must move.
    op_bytes : int
        The sum over every operation of the bytes of its tensor inputs and outputs,
        temporaries included: what the operations moved when run one by one.
    n_ops : int
        Number of operations (ATen calls) the call made.
    """

    read: tuple[str, ...]
    written: tuple[str, ...]
    ideal_bytes: int
    op_bytes: int
    n_ops: int


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


class _Recorder(TorchDispatchMode):
    def __init__(self, persistent: Mapping[int, str]):
        super().__init__()
        self.persistent = persistent
        self.read: dict[str, None] = {}
        self.written: dict[str, None] = {}
        self.op_bytes = 0
        self.n_ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.is_view:  # a view moves no data
            return out
        self.n_ops += 1
        reads: dict[int, int] = {}
        writes: dict[int, int] = {}
        for i, arg in enumerate(func._schema.arguments):
            value = kwargs.get(arg.name) if arg.kwarg_only or i >= len(args) else args[i]
            if isinstance(value, torch.Tensor):
                tensors = [value]
            elif isinstance(value, (list, tuple)):
                tensors = [v for v in value if isinstance(v, torch.Tensor)]
            else:
                tensors = []
            is_write = arg.alias_info is not None and arg.alias_info.is_write
            for t in tensors:
                key, size = _storage_key(t), t.numel() * t.element_size()
                name = self.persistent.get(key)
                if not arg.is_out:  # an out= argument is only written
                    reads[key] = size
                    if name is not None:
                        self.read.setdefault(name)
                if is_write:
                    writes[key] = size
                    if name is not None:
                        self.written.setdefault(name)
        if not writes:  # a functional operation writes its fresh outputs
            results = out if isinstance(out, (list, tuple)) else [out]
            for r in results:
                if isinstance(r, torch.Tensor):
                    writes[_storage_key(r)] = r.numel() * r.element_size()
        self.op_bytes += sum(reads.values()) + sum(writes.values())
        return out


def trace_traffic(fn: Callable[[], object], persistent: Mapping[str, torch.Tensor]) -> Traffic:
    """Run ``fn()`` and record the memory traffic of its operations.

    Parameters
    ----------
    fn : callable taking no arguments
        For instance ``optimizer.step``. Runs once, for real (its effects stay).
    persistent : mapping of str to tensor
        The tensors that live across calls (``{"w": w, "dw": w.grad, "exp_avg": ...}``).
        Tensors are recognised by their storage, so views of them count as them.

    Returns
    -------
    Traffic
        The persistent tensors read and written, the ideal bytes (each read once, each
        written once) and the bytes the operations moved one by one.
    """
    keys = {_storage_key(t): name for name, t in persistent.items()}
    sizes = {name: t.numel() * t.element_size() for name, t in persistent.items()}
    recorder = _Recorder(keys)
    with recorder:
        fn()
    read, written = tuple(recorder.read), tuple(recorder.written)
    ideal = sum(sizes[n] for n in read) + sum(sizes[n] for n in written)
    return Traffic(read, written, ideal, recorder.op_bytes, recorder.n_ops)


_DTYPES = {2: torch.float16, 4: torch.float32, 8: torch.float64}


def traced_adam_traffic(n_params: int = 1024, *, dtype: torch.dtype = torch.float32,
                        amsgrad: bool = False, optimizer: type | None = None,
                        **hyperparameters) -> Traffic:
    """Trace the second ``step()`` of an Adam optimizer on one parameter tensor.

    Parameters
    ----------
    n_params : int
        Entries of the parameter tensor (allocated for real, on the CPU).
    dtype : torch.dtype
    amsgrad : bool
    optimizer : Optimizer class, optional
        Default ``functools.partial(torch.optim.Adam, foreach=False)``: torch's per-tensor
        implementation, one operation at a time. A learner's class works too.
    **hyperparameters
        Passed to the optimizer (``lr``, ``weight_decay``, ...).

    Returns
    -------
    Traffic
        With persistent tensors named ``w``, ``dw`` and the state's tensor names; the step
        counter (a 0-d tensor) is left out. The first step, which creates the state, is not
        traced.
    """
    gen = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(n_params, generator=gen).to(dtype))
    w.grad = torch.randn(n_params, generator=gen).to(dtype)
    if optimizer is None:
        opt = torch.optim.Adam([w], amsgrad=amsgrad, foreach=False, **hyperparameters)
    else:
        opt = optimizer([w], amsgrad=amsgrad, **hyperparameters)
    opt.step()
    persistent = {"w": w, "dw": w.grad}
    persistent.update({name: t for name, t in opt.state[w].items()
                       if isinstance(t, torch.Tensor) and t.numel() == n_params})
    return trace_traffic(opt.step, persistent)


def torch_adam_step_bytes(n_params: int, dtype_bytes: int = 4, amsgrad: bool = False) -> int:
    """Bytes an ideal (fused) Adam step moves, counted from torch.optim.Adam's own step.

    The reference of lesson 09's ``adam_step_bytes``: one step of ``torch.optim.Adam`` on a
    small tensor is traced (:func:`traced_adam_traffic`), the persistent tensors it reads and
    writes are counted, and each is charged ``n_params * dtype_bytes`` bytes per read or write.

    Parameters
    ----------
    n_params : int
    dtype_bytes : int
        2, 4 or 8 (float16, float32, float64): every tensor has this dtype.
    amsgrad : bool

    Returns
    -------
    int
    """
    traffic = traced_adam_traffic(64, dtype=_DTYPES[int(dtype_bytes)], amsgrad=bool(amsgrad))
    per_tensor = int(n_params) * int(dtype_bytes)
    return (len(traffic.read) + len(traffic.written)) * per_tensor


# ---------------------------------------------------------------------------------------------
# What the device can do
# ---------------------------------------------------------------------------------------------
def copy_timing(n_bytes: int = 64 * 2**20, device: str = "cpu", *, repeat: int = 7,
                warmup: int = 2) -> tuple[int, Timing]:
    """Time ``dst.copy_(src)`` for float32 tensors of ``n_bytes`` each.

    Returns
    -------
    bytes_moved : int
        ``2 * n_bytes``: the copy reads ``src`` and writes ``dst``.
    timing : Timing
        Seconds per copy (median and spread over ``repeat`` runs after ``warmup``).
    """
    n = max(1, int(n_bytes) // 4)
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    timing = measure_device(lambda: dst.copy_(src), device, repeat=repeat, warmup=warmup)
    return 2 * n * 4, timing


def inplace_timing(n_bytes: int = 64 * 2**20, device: str = "cpu", *, repeat: int = 7,
                   warmup: int = 2) -> tuple[int, Timing]:
    """Time ``x.mul_(1.0)`` for a float32 tensor ``x`` of ``n_bytes``: read and write in place.

    Returns
    -------
    bytes_moved : int
        ``2 * n_bytes``: every entry is read and written back.
    timing : Timing
        Seconds per update.
    """
    n = max(1, int(n_bytes) // 4)
    x = torch.ones(n, device=device)
    timing = measure_device(lambda: x.mul_(1.0), device, repeat=repeat, warmup=warmup)
    return 2 * n * 4, timing


def matmul_timing(n: int = 512, device: str = "cpu", *, dtype: torch.dtype = torch.float32,
                  repeat: int = 5, warmup: int = 1) -> tuple[int, Timing]:
    """Time an ``n x n`` matrix product.

    Returns
    -------
    flops : int
        ``2 n^3`` (a multiply and an add per term).
    timing : Timing
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    timing = measure_device(lambda: a @ b, device, repeat=repeat, warmup=warmup)
    return 2 * n**3, timing


def optimizer_step_timing(optimizer: Callable, n_params: int = 2**22, device: str = "cpu", *,
                          n_tensors: int = 1, repeat: int = 7, warmup: int = 2,
                          dtype: torch.dtype = torch.float32, seed: int = 0) -> Timing:
    """Time ``optimizer.step()`` on ``n_params`` parameters split into ``n_tensors`` tensors.

    Parameters
    ----------
    optimizer : callable
        ``optimizer(params) -> torch.optim.Optimizer`` (a class, or a ``functools.partial``
        with its hyperparameters).
    n_params, n_tensors : int
        Total number of parameters, split as evenly as possible; gradients are random and stay
        fixed (only the step is timed).
    device : str
    repeat, warmup : int
        Timed steps and discarded steps (the first creates the state).
    dtype : torch.dtype
    seed : int

    Returns
    -------
    Timing
        Seconds per step.
    """
    gen = torch.Generator().manual_seed(seed)
    sizes = [n_params // n_tensors + (1 if i < n_params % n_tensors else 0)
             for i in range(n_tensors)]
    params = []
    for size in sizes:
        w = torch.nn.Parameter(torch.randn(size, generator=gen).to(device=device, dtype=dtype))
        w.grad = torch.randn(size, generator=gen).to(device=device, dtype=dtype) * 1e-3
        params.append(w)
    opt = optimizer(params)
    return measure_device(opt.step, device, repeat=repeat, warmup=max(1, warmup))


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------
def plot_roofline(ax, peak_gflops: float, peak_gbps: float,
                  points: Mapping[str, tuple[float, float]] = (), *,
                  intensities: Sequence[float] = (1e-2, 1e3), title: str = "") -> None:
    """The roofline ``min(peak_gflops, intensity * peak_gbps)`` on log-log axes, with points.

    Parameters
    ----------
    ax : matplotlib Axes
    peak_gflops : float
        Arithmetic roof, GFLOP/s.
    peak_gbps : float
        Memory roof, GB/s (the slope of the left part).
    points : mapping of str to (intensity, gflops)
        Measured kernels: arithmetic intensity (flop/byte) and achieved GFLOP/s.
    intensities : (float, float)
        Range of the x axis.
    title : str
    """
    x = np.logspace(np.log10(intensities[0]), np.log10(intensities[1]), 200)
    ax.loglog(x, np.minimum(peak_gflops, x * peak_gbps), color="k", lw=1.5, label="roofline")
    balance = peak_gflops / peak_gbps
    ax.axvline(balance, color="grey", ls=":", lw=1)
    ax.annotate(f"machine balance\n{balance:.3g} flop/byte", (balance, peak_gflops),
                xytext=(4, -28), textcoords="offset points", fontsize=8, color="grey")
    for k, (label, (intensity, gflops)) in enumerate(dict(points).items()):
        ax.loglog([intensity], [gflops], "o", color=f"C{k}", label=label)
    ax.set_xlabel("arithmetic intensity (flop / byte)")
    ax.set_ylabel("GFLOP/s")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
