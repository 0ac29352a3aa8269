"""Lesson 09: mixed precision, rounding in float16 and bfloat16, underflow, loss scaling, autocast.

- :func:`running_sum` adds the same number ``n`` times in a given dtype, one addition at a
  time, as a naive loop or a per-thread accumulator does; :func:`precision_table` lists
  what each floating-point format can represent.
- :func:`underflow_fractions` shows which small gradients float16 and bfloat16 flush to zero,
  with and without a loss scale.
- :func:`simulate_dynamic_scaling` runs a learner's ``update_loss_scale`` against gradients of
  a given size (the check's reference is the instructor's,
  :func:`dlopt_instructor.amp.torch_update_loss_scale`; its driver is
  :func:`dlopt.grading.drivers.loss_scale.run_loss_scale`).
- :func:`autocast_timing` times a matrix product in float32 and under ``torch.autocast``;
  :func:`train_mixed` trains a small digits classifier in float32 or under autocast
  (bfloat16 on the CPU, float16 with a GradScaler on CUDA).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dlopt.kit.data import DigitsSplit, load_digits_split
from dlopt.kit.timing import Timing
from dlopt.lessons.l09_performance.gpu_timing import measure_device

__all__ = [
    "MixedRun",
    "autocast_timing",
    "plot_loss_scale",
    "precision_table",
    "running_sum",
    "simulate_dynamic_scaling",
    "train_mixed",
    "underflow_fractions",
]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------------------------------------
# Rounding
# ---------------------------------------------------------------------------------------------
def running_sum(value: float, n: int, dtype: str = "float16") -> float:
    """``value + value + ...`` (``n`` terms) with every partial sum rounded to ``dtype``.

    Parameters
    ----------
    value : float
    n : int
    dtype : str
        ``"float32"``, ``"float16"`` or ``"bfloat16"``.

    Returns
    -------
    float
        The final sum. Once the spacing of representable numbers around the sum exceeds
        twice ``value``, adding ``value`` rounds back to the same sum: the sum stalls.
    """
    dt = DTYPES[dtype]
    step = torch.tensor(value, dtype=dt)
    total = torch.zeros((), dtype=dt)
    for _ in range(int(n)):
        total = total + step  # rounded to dtype after every addition
    return float(total)


def precision_table() -> dict[str, dict[str, float]]:
    """For float32, float16 and bfloat16: bits, eps, largest, smallest normal and subnormal.

    Returns
    -------
    dict of str to dict
        ``{"float16": {"bits": 16, "mantissa_bits": 10, "eps": ..., "max": ...,
        "smallest_normal": ..., "smallest_subnormal": ...}, ...}``.
    """
    table = {}
    for name, dt in DTYPES.items():
        info = torch.finfo(dt)
        table[name] = {
            "bits": info.bits, "mantissa_bits": int(round(-np.log2(info.eps))),
            "eps": info.eps, "max": info.max, "smallest_normal": info.smallest_normal,
            "smallest_subnormal": float(torch.nextafter(torch.zeros((), dtype=dt),
                                                        torch.ones((), dtype=dt))),
        }
    return table


def underflow_fractions(grads: np.ndarray, scales: Sequence[float] = (1.0, 2.0**16),
                        dtypes: Sequence[str] = ("float16", "bfloat16")) -> dict:
    """Fraction of nonzero gradients that become 0 (or inf) when stored in a low precision.

    Each gradient is multiplied by the loss scale in float32 (what scaling the loss does to
    every gradient), rounded to ``dtype``, then divided by the scale again in float32.

    Parameters
    ----------
    grads : ndarray, float
        Nonzero gradient values.
    scales : sequence of float
    dtypes : sequence of str

    Returns
    -------
    dict
        ``{(dtype, scale): {"zero": fraction flushed to 0, "inf": fraction overflowed,
        "rel_error": median relative error of the others}}``.
    """
    g = torch.tensor(np.asarray(grads, dtype=np.float32))
    out = {}
    for dtype in dtypes:
        for scale in scales:
            stored = (g * scale).to(DTYPES[dtype])
            back = stored.float() / scale
            zero = (stored == 0) & (g != 0)
            inf = ~torch.isfinite(stored)
            ok = ~zero & ~inf
            rel = ((back[ok] - g[ok]).abs() / g[ok].abs()).median() if ok.any() else torch.nan
            out[(dtype, float(scale))] = {"zero": float(zero.float().mean()),
                                          "inf": float(inf.float().mean()),
                                          "rel_error": float(rel)}
    return out


# ---------------------------------------------------------------------------------------------
# Dynamic loss scaling
# ---------------------------------------------------------------------------------------------




def simulate_dynamic_scaling(update: Callable, n_steps: int = 400, *, seed: int = 0,
                             grad_max: float = 1.0, scale: float = 2.0**16,
                             growth_interval: int = 50, max_value: float = 65504.0) -> dict:
    """A learner's loss-scale rule against gradients whose largest entry is about ``grad_max``.

    At every step the largest scaled gradient is ``scale * grad_max * u`` with ``u`` drawn
    log-uniformly in [0.25, 4] (gradients vary from step to step); above ``max_value``
    (float16's largest number) it overflows, the step is skipped and the rule is told so.

    Returns
    -------
    dict
        ``"scale"`` (n_steps + 1), ``"found_inf"`` (n_steps, bool), ``"skipped"`` (fraction of
        skipped steps), ``"safe_scale"`` (``max_value / grad_max``, the largest scale that
        never overflows for a typical step).
    """
    rng = np.random.default_rng(seed)
    u = 2.0 ** rng.uniform(-2, 2, size=n_steps)
    tracker = 0
    scales, flags = [float(scale)], []
    for t in range(n_steps):
        found_inf = bool(scale * grad_max * u[t] > max_value)
        scale, tracker = update(scale, tracker, found_inf, growth_factor=2.0,
                                backoff_factor=0.5, growth_interval=growth_interval)
        scales.append(float(scale))
        flags.append(found_inf)
    flags = np.array(flags)
    return {"scale": np.array(scales), "found_inf": flags, "skipped": float(flags.mean()),
            "safe_scale": max_value / grad_max}


def plot_loss_scale(ax, run: dict, *, title: str = "") -> None:
    """Scale against step (log scale), overflow steps marked, float16's safe scale dashed."""
    steps = np.arange(len(run["scale"]))
    ax.semilogy(steps, run["scale"], color="tab:blue", lw=1.2, label="loss scale")
    bad = np.flatnonzero(run["found_inf"]) + 1
    ax.semilogy(bad, run["scale"][bad - 1], "x", color="tab:red", ms=4,
                label="overflow: step skipped, scale halved")
    ax.axhline(run["safe_scale"], color="grey", ls="--", lw=1,
               label="65504 / largest gradient")
    ax.set_xlabel("step")
    ax.set_ylabel("scale")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)


# ---------------------------------------------------------------------------------------------
# Speed and training
# ---------------------------------------------------------------------------------------------
def autocast_timing(device: str = "cpu", n: int = 512, *, repeat: int = 5) -> dict[str, Timing]:
    """Time an ``n x n`` matrix product in float32 and under ``torch.autocast``.

    Autocast uses bfloat16 on the CPU and float16 on CUDA (and MPS).

    Returns
    -------
    dict of str to Timing
        ``{"float32": ..., "autocast bfloat16": ...}`` (or ``"autocast float16"``).
    """
    low = torch.bfloat16 if device == "cpu" else torch.float16
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device)
    b = torch.randn(n, n, generator=gen).to(device)

    def low_precision():
        with torch.autocast(device_type=device, dtype=low):
            return a @ b

    return {"float32": measure_device(lambda: a @ b, device, repeat=repeat),
            f"autocast {str(low).split('.')[-1]}": measure_device(low_precision, device,
                                                                   repeat=repeat)}


@dataclass
class MixedRun:
    """A training run of :func:`train_mixed`."""

    label: str
    train_loss: np.ndarray  # mean loss per epoch
    test_accuracy: float
    seconds: float
    skipped_steps: int


def train_mixed(precision: str = "float32", *, device: str = "cpu", epochs: int = 10,
                batch_size: int = 64, lr: float = 1e-3, hidden: int = 256, seed: int = 0,
                data: DigitsSplit | None = None) -> MixedRun:
    """Train ``64 -> hidden -> hidden -> 10`` (ReLU) on the digits with torch.optim.Adam.

    Parameters
    ----------
    precision : str
        ``"float32"``; ``"bfloat16"`` (autocast, no scaler: bfloat16 has float32's range);
        ``"float16"`` (autocast and ``torch.amp.GradScaler``; CUDA only).
    device : str
    epochs, batch_size, lr, hidden, seed
    data : DigitsSplit, optional

    Returns
    -------
    MixedRun
    """
    import time

    if precision == "float16" and not str(device).startswith("cuda"):
        raise ValueError("float16 autocast with a GradScaler is for CUDA; use bfloat16 on the CPU")
    data = data if data is not None else load_digits_split(seed=0)
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
            torch.nn.ReLU(), torch.nn.Linear(hidden, 10)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        scaler = torch.amp.GradScaler(device) if precision == "float16" else None
        dtype = DTYPES[precision]
        X = torch.tensor(data.X_train, dtype=torch.float32, device=device)
        y = torch.tensor(data.y_train, device=device)
        rng = np.random.default_rng(seed)
        losses, skipped = [], 0
        start = time.perf_counter()
        for _ in range(epochs):
            order = torch.tensor(rng.permutation(len(X)), device=device)
            total, count = torch.zeros((), device=device), 0
            for i in range(0, len(X) - batch_size + 1, batch_size):
                idx = order[i:i + batch_size]
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device_type=str(device).split(":")[0], dtype=dtype,
                                    enabled=precision != "float32"):
                    loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
                if scaler is not None:
                    before = scaler.get_scale()
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    skipped += int(scaler.get_scale() < before)
                else:
                    loss.backward()
                    opt.step()
                total += loss.detach().float()
                count += 1
            losses.append(float(total) / count)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            pred = model(torch.tensor(data.X_test, dtype=torch.float32, device=device))
            acc = float((pred.argmax(1).cpu().numpy() == data.y_test).mean())
    return MixedRun(precision, np.array(losses), acc, seconds, skipped)
