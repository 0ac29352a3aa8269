"""NumPy against torch on the CPU (and torch on a GPU when there is one) across problem sizes.

Two operations on float32 data: ``a * b + c`` on vectors (memory-bound: 12 bytes read and 4
written per 2 flops) and ``a @ b`` on square matrices (compute-bound once large). Every entry is
the median over ``--repeat`` runs after a warm-up, each run repeating the operation for about
2 ms so that microsecond operations are measurable; GPU times include a synchronize but not the
copy from the host. The script prints the table of times, the speed-ups over NumPy, where torch
starts to win (the crossover), and saves the figure to
``benchmarks/figures/speedup_curve_<device>.png`` (cpu or cuda).
It asserts nothing: the unit tests never depend on timing.

Torch and NumPy's BLAS use ``--threads`` threads (default 1: on a shared machine, threads that
wait for a busy core make short operations many times slower; 0 leaves every library's default).

Run from the repository root:  python benchmarks/speedup_curve.py [--device cpu|cuda]
[--repeat 5] [--threads 1] [--max-elementwise 2**24] [--max-matmul 2048]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, however it is loaded
from bench_device import add_device_options, resolve  # noqa: E402

from dlopt.kit.plotting import new_figure
from dlopt.lessons.l09_performance import perf_lab

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "benchmarks" / "figures"


def print_table(table: perf_lab.SpeedupTable) -> None:
    backends = list(table.seconds)
    unit = "n (vector)" if table.op == "elementwise" else "n (n x n)"
    print(f"\n{'a * b + c' if table.op == 'elementwise' else 'a @ b'}: median µs per operation, "
          f"and speed-up over numpy")
    print(f"{unit:>11}  " + "  ".join(f"{b:>12}" for b in backends) + "  "
          + "  ".join(f"{b + ' / np':>16}" for b in backends[1:]))
    for i, size in enumerate(table.sizes):
        times = [table.seconds[b][i] for b in backends]
        print(f"{size:>11}  " + "  ".join(f"{t * 1e6:12.2f}" for t in times) + "  "
              + "  ".join(f"{times[0] / t:15.2f}x" for t in times[1:]))
    for backend in backends[1:]:
        cross = table.crossover("numpy", backend)
        if cross is not None:
            print(f"  {backend} is faster than numpy from n = {cross} on")
        else:
            print(f"  {backend} does not stay faster than numpy from any measured size on")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_options(parser, repeat=5)
    parser.add_argument("--max-elementwise", type=int, default=2**24)
    parser.add_argument("--max-matmul", type=int, default=2048)
    args = parser.parse_args(argv)
    bench = resolve(args)
    device, threads, name = bench.device, bench.threads, bench.name
    print(bench.describe(f"numpy {np.__version__}"))
    elementwise = [2**k for k in range(4, 25, 2) if 2**k <= args.max_elementwise]
    matmul = [n for n in (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
              if n <= args.max_matmul]
    tables = [perf_lab.speedup_table("elementwise", elementwise, device=device,
                                     repeat=args.repeat, threads=threads),
              perf_lab.speedup_table("matmul", matmul, device=device, repeat=args.repeat,
                                     threads=threads)]
    for table in tables:
        print_table(table)
    fig, axes = new_figure(1, 2, figsize=(11, 4))
    for ax, table in zip(axes, tables, strict=True):
        perf_lab.plot_speedup(ax, table)
    fig.suptitle(f"NumPy vs torch on {device} ({name}), threads: {threads or 'default'}")
    figure = FIGURES / f"speedup_curve_{device.split(':')[0]}.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=100)
    print(f"\nfigure saved to {figure.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
