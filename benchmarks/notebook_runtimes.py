"""How long each lesson takes to run top to bottom in a fresh kernel, against the 30 s budget.

    python benchmarks/notebook_runtimes.py [LESSON ...] [--release] [--cells 5]

Each notebook is executed the way a student's Run All does it: a fresh ``python3`` kernel,
every cell in order, kernel start included. ``solutions/`` by default (every exercise
answered, so every experiment runs in full); ``--release`` runs ``course/`` instead (the
untouched student copy: checks stop at the stubs, experiments say what is missing). For each
notebook it prints the seconds, the ratio to the budget and the slowest cells.

The budget, from the developers' guide: every notebook runs on a 2-core CPU in at most 30 s.
The tests do not time notebooks (shared machines vary too much); this script does, and the
results worth keeping are recorded in benchmarks/README.md with the machine they came from.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder.course import Course  # noqa: E402

BUDGET_SECONDS = 30.0


def cell_seconds(cell) -> float | None:
    """Seconds between the kernel starting a cell and its reply (nbclient's timing metadata)."""
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda stamp: datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def run(path: Path) -> tuple[float, list[tuple[float, str]], int]:
    """Execute ``path`` in a fresh kernel: (total seconds, [(seconds, cell)], error outputs)."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                                     record_timing=True,
                                     resources={"metadata": {"path": str(ROOT)}})
    start = time.perf_counter()
    client.execute()
    total = time.perf_counter() - start
    cells, errors = [], 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        name = cell.metadata.get("nbgrader", {}).get("grade_id", f"cell {index}")
        seconds = cell_seconds(cell)
        if seconds is not None:
            cells.append((seconds, name))
        errors += sum(out.output_type == "error" for out in cell.outputs)
    return total, sorted(cells, reverse=True), errors


def main(argv: list[str] | None = None) -> int:
    course = Course(ROOT)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson folders (default: all)")
    parser.add_argument("--release", action="store_true",
                        help="run the student release (course/) instead of solutions/")
    parser.add_argument("--cells", type=int, default=5, help="slowest cells to list per lesson")
    args = parser.parse_args(argv)
    lessons = args.lessons or course.lessons()
    unknown = sorted(set(lessons) - set(course.lessons()))
    if unknown:
        parser.error(f"no such lesson: {', '.join(unknown)} (have: {', '.join(course.lessons())})")

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}; "
          f"{'course/ (release)' if args.release else 'solutions/'}; budget {BUDGET_SECONDS:g} s")
    over = []
    for lesson in lessons:
        path = course.release_notebook(lesson) if args.release else course.source_notebook(lesson)
        total, cells, errors = run(path)
        ratio = total / BUDGET_SECONDS
        print(f"{lesson:<24} {total:6.1f} s  ratio {ratio:4.2f}"
              f"{'  OVER' if ratio > 1 else ''}{f'  ({errors} error outputs)' if errors else ''}"
              f"  (load {os.getloadavg()[0]:.1f})")
        for seconds, name in cells[:args.cells]:
            print(f"    {seconds:6.2f} s  {name}")
        if ratio > 1:
            over.append(lesson)
    if over:
        print(f"over the budget: {', '.join(over)}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
