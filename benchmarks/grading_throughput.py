"""How fast does the grader grade a class? Prints times and ratios measured in one run.

For the same submissions on the same machine it measures
  (a) plain sequential execution of the notebooks (nbclient, one after the other),
  (b) ``python -m autograder grade`` with 2 workers (sandboxed),
  (c) plain ``nbgrader autograde`` of the same submissions,
and prints (b)/(a) (target <= 0.8 on 2 cores) and (c)/(b) (target >= 2).

    python benchmarks/grading_throughput.py [--lesson 01_activations] [--students 8]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import answer_sources, submission  # noqa: E402

from autograder.cli import main  # noqa: E402
from autograder.course import Course  # noqa: E402


def course_copy(where: Path, lesson: str) -> Course:
    for folder in ("solutions", "course"):
        shutil.copytree(ROOT / folder / lesson, where / folder / lesson)
    (where / "autograder").mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", where)
    shutil.copy(ROOT / "autograder" / "nbgrader_config.py", where / "autograder")
    return Course(where)


def plain_sequential(notebooks: list[Path]) -> float:
    start = time.perf_counter()
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def ours(course: Course, lesson: str, subs: Path) -> float:
    start = time.perf_counter()
    code = main(["grade", lesson, "--submissions", str(subs), "--workers", "2"], course)
    assert code == 0
    return time.perf_counter() - start


def nbgrader_autograde(course: Course, lesson: str, subs: Path) -> float:
    for student in sorted(p.name for p in subs.iterdir()):
        target = course.root / "autograder" / "submitted" / student / lesson
        target.mkdir(parents=True)
        shutil.copy(next((subs / student).glob("*.ipynb")), target / f"{lesson}.ipynb")
    nbgrader = [sys.executable, "-m", "nbgrader"]
    subprocess.run([*nbgrader, "generate_assignment", lesson, "--force",
                    "--CourseDirectory.release_directory=_release"], cwd=course.root,
                   check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run([*nbgrader, "autograde", lesson, "--force"], cwd=course.root, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def run(lesson: str, students: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        subs = scratch / "subs"
        paths = []
        for k in range(students):
            answers = answer_sources(lesson) if k % 2 == 0 else None
            path = subs / f"student{k:02d}" / "submission.ipynb"
            path.parent.mkdir(parents=True)
            nbformat.write(submission(lesson, answers), path)
            paths.append(path)
        plain_copies = []
        for path in paths:
            copy = scratch / "plain" / path.parent.name / path.name
            copy.parent.mkdir(parents=True)
            shutil.copy(path, copy)
            plain_copies.append(copy)
        t_plain = plain_sequential(plain_copies)
        t_ours = ours(course_copy(scratch / "ours", lesson), lesson, subs)
        t_nbgrader = nbgrader_autograde(course_copy(scratch / "nbg", lesson), lesson, subs)
    print(f"\n{students} submissions of {lesson} on {__import__('os').cpu_count()} cores")
    print(f"  (a) plain sequential execution : {t_plain:7.1f} s")
    print(f"  (b) autograder, 2 workers      : {t_ours:7.1f} s")
    print(f"  (c) nbgrader autograde         : {t_nbgrader:7.1f} s")
    print(f"  (b)/(a) = {t_ours / t_plain:.2f}   (target <= 0.8)")
    print(f"  (c)/(b) = {t_nbgrader / t_ours:.2f}   (target >= 2)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesson", default="01_activations")
    parser.add_argument("--students", type=int, default=8)
    args = parser.parse_args()
    run(args.lesson, args.students)
