"""What does each sandbox backend cost? Grades the same submissions under each and prints the
time per submission and the ratio to grading without a sandbox.

    python benchmarks/sandbox_backends.py [--lesson 01_activations] [--students 6]
        [--backends root userns none]

Run as root to measure ``root`` (``userns`` runs as any user, root included). Each backend
grades the same class with 2 workers and ``--force``, after one warm-up grading that fills the
reference cache.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "tests")]

from conftest import answer_sources, submission, write_submission  # noqa: E402
from grading_throughput import course_copy  # noqa: E402

from autograder.cli import main  # noqa: E402


def grade(course, lesson: str, subs: Path, backend: str) -> float:
    start = time.perf_counter()
    code = main(["grade", lesson, "--submissions", str(subs), "--workers", "2", "--force",
                 "--sandbox", backend], course)
    assert code == 0, f"grading under {backend} failed"
    return time.perf_counter() - start


def run(lesson: str, students: int, backends: list[str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        course = course_copy(scratch / "course", lesson)
        subs = scratch / "subs"
        for k in range(students):
            write_submission(subs, f"student{k:02d}", submission(lesson, answer_sources(lesson)))
        grade(course, lesson, subs, "none")  # the reference export, cached for all
        seconds = {backend: grade(course, lesson, subs, backend) for backend in backends}
    base = seconds.get("none")
    print(f"{lesson}, {students} submissions, 2 workers")
    print(f"{'backend':8} {'total s':>8} {'s/submission':>13} {'ratio to none':>14}")
    for backend, total in seconds.items():
        ratio = f"{total / base:14.2f}" if base else f"{'-':>14}"
        print(f"{backend:8} {total:8.1f} {total / students:13.2f} {ratio}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesson", default="01_activations")
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--backends", nargs="+", default=["root", "userns", "none"])
    args = parser.parse_args()
    run(args.lesson, args.students, args.backends)
