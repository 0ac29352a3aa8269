"""The learner's Adam under torch.compile: achieved bandwidth against the device's copy bandwidth.

Target: on an H100-class GPU, one step of the learner's ``Adam`` (lesson 08) compiled with
``torch.compile``, on 50 million parameters or more, reaches at least 70 % of the bandwidth of a
large device-to-device copy (``dst.copy_(src)``).

An Adam step in one pass reads ``w``, ``dw``, ``exp_avg`` and ``exp_avg_sq`` and writes ``w``,
``exp_avg`` and ``exp_avg_sq``: 7 x 4 = 28 bytes per float32 parameter (lesson 09). The achieved
bandwidth is these bytes divided by the median time of a step; the copy moves twice the bytes of
its tensor (read and write) and is timed the same way (warm-up, medians, CUDA events on CUDA).

The learner's class is the instructor's answer, taken from ``solutions/08_pytorch_from_numpy``
by executing its answer cells. Its ``step`` reads the step counter with ``.item()``, which
would break the compiled graph; ``torch._dynamo.config.capture_scalar_outputs = True`` lets
Dynamo trace through it. The script also times, for context, the same class eagerly and torch's
``Adam(fused=True)``, checks that the compiled learner's Adam still agrees with torch's Adam, and
on a CPU measures an in-place update (``x.mul_(1.0)``) as well: on a CPU a copy into a separate
buffer pays for *write-allocate* (the destination is read into the cache before it is written),
so an in-place update such as an optimizer step can beat the copy's figure. The GPU target
applies to CUDA; on a CPU the figures are printed for reference.

Compilation on a CPU needs a C++ compiler and takes tens of seconds the first time (Inductor
caches the generated code in the temporary folder). The default size is 64 M parameters on a
GPU (4 tensors) and 8 M on a CPU.

Run from the repository root:  python benchmarks/compiled_adam.py [--device cpu|cuda]
[--params 64e6] [--tensors 4] [--repeat 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, however it is loaded
from bench_device import add_device_options, resolve  # noqa: E402
from solution_answers import answer_functions  # noqa: E402

from dlopt.lessons.l09_performance import roofline
from dlopt.lessons.l09_performance.gpu_timing import cpu_threads, device_sync, measure_device

ROOT = Path(__file__).resolve().parents[1]
LESSON_08 = "08_pytorch_from_numpy"
TARGET = 0.70
BYTES_PER_PARAM = 7 * 4


def make_params(n_params: int, n_tensors: int, device: str, seed: int = 0):
    gen = torch.Generator(device=device).manual_seed(seed)
    sizes = [n_params // n_tensors + (1 if i < n_params % n_tensors else 0)
             for i in range(n_tensors)]
    params = []
    for size in sizes:
        w = torch.nn.Parameter(torch.randn(size, generator=gen, device=device) * 0.02)
        w.grad = torch.randn(size, generator=gen, device=device) * 1e-3
        params.append(w)
    return params


def gbps(nbytes: float, seconds: float) -> float:
    return nbytes / seconds / 1e9


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_options(parser, repeat=20, warmup=3)
    parser.add_argument("--params", type=float, default=None,
                        help="parameters (default 64e6 on a GPU, 8e6 on a CPU)")
    parser.add_argument("--tensors", type=int, default=4)
    args = parser.parse_args(argv)
    bench = resolve(args)
    device, kind, threads = bench.device, bench.kind, bench.threads
    n_params = int(args.params or (64e6 if kind == "cuda" else 8e6))
    lesson = answer_functions(LESSON_08)
    if lesson is None or "Adam" not in lesson:
        raise SystemExit(f"solutions/{LESSON_08} with an Adam class is needed; not found")
    Adam = lesson["Adam"]
    print(bench.describe())
    step_bytes = BYTES_PER_PARAM * n_params
    print(f"Adam step on {n_params / 1e6:.0f} M float32 parameters in {args.tensors} tensors: "
          f"{step_bytes / 1e9:.2f} GB in one pass\n")

    sync = device_sync(device)
    timed = {}
    # capture_scalar_outputs: Dynamo traces through the learner's .item() instead of breaking
    with cpu_threads(threads), torch._dynamo.config.patch(capture_scalar_outputs=True):
        # the device's references: a copy with the step's footprint, and (CPU) an in-place update
        footprint = 16 * n_params
        copy_bytes, copy_time = roofline.copy_timing(footprint // 2, device, repeat=args.repeat)
        references = {"copy_ (device to device)": gbps(copy_bytes, copy_time.median)}
        print(f"{'copy_ of two ' + format(footprint / 2e9, '.2f') + ' GB tensors':<34} "
              f"{str(copy_time):<38} {references['copy_ (device to device)']:8.1f} GB/s")
        if kind == "cpu":
            inplace_bytes, inplace_time = roofline.inplace_timing(footprint, device,
                                                                  repeat=args.repeat)
            references["in place, x.mul_(1.0)"] = gbps(inplace_bytes, inplace_time.median)
            print(f"{'in place x.mul_(1.0), ' + format(footprint / 1e9, '.2f') + ' GB':<34} "
                  f"{str(inplace_time):<38} {references['in place, x.mul_(1.0)']:8.1f} GB/s")
        print()

        params = make_params(n_params, args.tensors, device)
        twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for t, p in zip(twin, params, strict=True):
            t.grad = p.grad.clone()
        learner = Adam(params, lr=1e-3)
        reference = torch.optim.Adam(twin, lr=1e-3, foreach=False)
        learner.step()  # creates the state
        reference.step()
        compiled_step = torch.compile(learner.step)
        sync()
        start = time.perf_counter()
        compiled_step()
        sync()
        compile_seconds = time.perf_counter() - start
        reference.step()
        timed["learner's Adam, compiled"] = measure_device(compiled_step, device,
                                                           repeat=args.repeat,
                                                           warmup=args.warmup)
        for _ in range(args.repeat + args.warmup):
            reference.step()
        with torch.no_grad():
            max_diff = max(float((a - b).abs().max()) for a, b in zip(params, twin, strict=True))
        eager = Adam(make_params(n_params, args.tensors, device, seed=1), lr=1e-3)
        timed["learner's Adam, eager"] = measure_device(eager.step, device, repeat=args.repeat,
                                                        warmup=args.warmup)
        fused = torch.optim.Adam(make_params(n_params, args.tensors, device, seed=2), lr=1e-3,
                                 fused=True)
        timed["torch Adam(fused=True)"] = measure_device(fused.step, device, repeat=args.repeat,
                                                         warmup=args.warmup)

    print(f"first call of the compiled step (compilation): {compile_seconds:.1f} s")
    print(f"{'step':<34} {'median ± IQR':<38} {'GB/s':>8}  " + "  ".join(
        f"{'/ ' + r.split(',')[0].split(' (')[0]:>12}" for r in references))
    for label, timing in timed.items():
        achieved = gbps(step_bytes, timing.median)
        print(f"{label:<34} {str(timing):<38} {achieved:8.1f}  " + "  ".join(
            f"{achieved / ref:12.0%}" for ref in references.values()))
    achieved = gbps(step_bytes, timed["learner's Adam, compiled"].median)
    ratio = achieved / references["copy_ (device to device)"]
    verdict = "met" if ratio >= TARGET else "NOT met"
    where = ("" if kind == "cuda" else
             " (the target applies to an H100-class GPU; these are CPU figures, for reference)")
    print(f"\ncompiled learner's Adam: {achieved:.1f} GB/s = {ratio:.0%} of the copy's bandwidth; "
          f"target >= {TARGET:.0%}: {verdict}; ratio to target {ratio / TARGET:.2f}{where}")
    print(f"largest difference from torch.optim.Adam after {args.repeat + args.warmup + 2} "
          f"steps: {max_diff:.1e}")


if __name__ == "__main__":
    main()
