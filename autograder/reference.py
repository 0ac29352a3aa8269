"""The expected side of grading: run the instructor's notebook and export every exercise.

The instructor's solutions notebook runs in its own kernel with ``DLOPT_EXPORT_EXERCISES=1``:
each check cell then publishes its scenarios (public and hidden), the instructor's outputs and
the outputs of each named mistake, as plain data. That is trusted code; the student's kernel
never sees expected values.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat.v4 import new_notebook

from autograder.assemble import EXPERIMENT_TAG, is_check_cell, nbgrader_meta, with_cell_ids
from autograder.course import Course, UsageError
from autograder.runner import execute
from dlopt.grading import EXERCISE_MIME, EXPORT_ENV


@dataclass
class CheckCell:
    grade_id: str
    points: float
    exercises: list[dict]  # ExerciseData.to_plain() of each exercise the cell checks


@dataclass
class Reference:
    lesson: str
    checks: list[CheckCell]

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.checks)

    def exports(self) -> dict[str, list[dict]]:
        return {c.grade_id: c.exercises for c in self.checks}


def _first_error(cell) -> str:
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            return f"{out.ename}: {out.evalue}"
    return ""


def build_reference(course: Course, lesson: str, *, cell_timeout: float = 120,
                    budget: float = 600) -> Reference:
    """Run the instructor's notebook for ``lesson`` (experiments skipped) and collect exports."""
    source = nbformat.read(course.source_notebook(lesson), as_version=4)
    nb = new_notebook(metadata=source.metadata)
    nb.cells = [c for c in source.cells if c.cell_type == "code"
                and EXPERIMENT_TAG not in c.metadata.get("tags", [])]
    with_cell_ids(nb)
    with tempfile.TemporaryDirectory(prefix="reference-") as scratch:
        run = execute(nb, Path(scratch), cell_timeout=cell_timeout, budget=budget,
                      env={EXPORT_ENV: "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})
    if run.status != "ok":
        raise UsageError(f"the instructor's notebook for {lesson} did not run: {run.detail}")
    checks = []
    for cell in run.notebook.cells:
        problem = _first_error(cell)
        gid = nbgrader_meta(cell).get("grade_id", "?")
        if problem:
            raise UsageError(f"the instructor's notebook for {lesson} fails in cell '{gid}': "
                             f"{problem}")
        if is_check_cell(cell):
            exercises = [out["data"][EXERCISE_MIME] for out in cell.outputs
                         if out.output_type == "display_data" and EXERCISE_MIME in out["data"]]
            if not exercises:
                raise UsageError(f"check cell '{gid}' of {lesson} defines no dlopt check: "
                                 f"the grader cannot grade it outside the student's kernel")
            checks.append(CheckCell(gid, float(nbgrader_meta(cell).get("points", 0)), exercises))
    return Reference(lesson, checks)
