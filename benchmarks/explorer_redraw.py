"""How long the convergence explorer takes to redraw after a slider change.

Target: within 250 ms for 500 steps x 4 optimizers on a 2-core CPU. The update rules are the
instructor's NumPy answers, taken from the solution notebooks by executing their answer cells:
lesson 03's ``sgd_step`` and ``sgd_momentum_step``, and lesson 04's rules when
``solutions/04_adaptive_optimizers`` exists; without lesson 04 the four optimizers are SGD,
heavy ball, Nesterov and heavy ball with momentum 0.5.

For every surface the explorer is set to 500 steps, the ``lr`` slider is moved ``--changes``
times to new values (never one seen before, so no cached run is reused), and each change is
timed from the assignment to the new PNG in the widget: the runs, the drawing and the encoding.
The script prints the median and the 90th percentile and their ratio to the target. It asserts
nothing: the unit tests never depend on timing. ``--clock cpu`` measures this process's CPU
time instead of the wall clock: on a machine whose cores are busy with other work, the wall
clock mostly measures the wait for a core, the CPU time what a redraw costs.

Run from the repository root:  python benchmarks/explorer_redraw.py [--changes 30] [--clock cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, however it is loaded
from solution_answers import answer_functions  # noqa: E402

from dlopt.lessons.l03_gradient_descent.explorer import ConvergenceExplorer

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 0.250
STEPS = 500
#: lr sliders' range per surface: runs that stay on the picture most of the time.
LR_RANGES = {"quadratic": (0.05, 1.0), "Rosenbrock": (1e-4, 1e-3), "Beale": (1e-4, 2e-3),
             "saddle": (1e-3, 1e-2)}


def optimizers() -> tuple[dict, str]:
    lesson03 = answer_functions("03_gradient_descent")
    sgd, momentum = lesson03["sgd_step"], lesson03["sgd_momentum_step"]
    lesson04 = answer_functions("04_adaptive_optimizers")
    if lesson04:
        adaptive = [name for name in ("adam_step", "rmsprop_step", "adamw_step", "adagrad_step")
                    if callable(lesson04.get(name))][:2]
    if lesson04 and len(adaptive) == 2:
        chosen = {"sgd": (sgd, {}), "heavy ball": (momentum, {})}
        chosen.update({name: (lesson04[name], {"lr": 0.05}) for name in adaptive})
        return chosen, "lessons 03 and 04"
    return {"sgd": (sgd, {}), "heavy ball": (momentum, {}),
            "nesterov": (momentum, {"nesterov": True}),
            "heavy ball 0.5": (momentum, {"momentum": 0.5})}, "lesson 03 (no lesson 04 yet)"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{cpu}; {cores} cores available; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; load average {load}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=30, help="slider changes per surface")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall clock (default) or this process's CPU time")
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    chosen, source = optimizers()
    print(f"machine: {machine()}")
    print(f"rules from {source}: {', '.join(chosen)}; {STEPS} steps each; "
          f"{'wall-clock' if args.clock == 'wall' else 'CPU'} time")
    widget = ConvergenceExplorer(chosen, steps=STEPS)
    everything = []
    for surface in widget.surface.options:
        widget.surface.value = surface
        lo, hi = next(r for key, r in LR_RANGES.items() if surface.startswith(key))
        values = np.geomspace(lo, hi, args.changes + 1)
        widget.lr.value = float(values[-1])  # warm-up: contours, background, caches
        times, steps_run = [], []
        for value in values[:-1]:
            start = clock()
            widget.lr.value = float(value)
            times.append(clock() - start)
            steps_run.append(sum(len(run.points) - 1 for run in widget.runs.values()))
        everything += times
        median, p90 = statistics.median(times), float(np.percentile(times, 90))
        print(f"{surface:22s} median {median * 1e3:6.1f} ms  p90 {p90 * 1e3:6.1f} ms  "
              f"({median / TARGET_SECONDS:.2f} / {p90 / TARGET_SECONDS:.2f} of the target; "
              f"{np.mean(steps_run):.0f} steps computed per redraw on average)")
    median, p90 = statistics.median(everything), float(np.percentile(everything, 90))
    print(f"{'all surfaces':22s} median {median * 1e3:6.1f} ms  p90 {p90 * 1e3:6.1f} ms  "
          f"ratio to the 250 ms target: median {median / TARGET_SECONDS:.2f}, "
          f"p90 {p90 / TARGET_SECONDS:.2f}")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
