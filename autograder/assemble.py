"""Build the notebook the grader executes from the instructor's notebook and a submission.

Only the student's *code* is taken from the submission: the cells marked as answers (matched
by nbgrader's grade_id) and cells the student added. Everything else comes from the
instructor's copy, so edited, deleted, moved or duplicated check cells change nothing. Check
cells are not executed at all: after the student's code, the grader appends one probe cell
per exercise (dlopt.grading.probe), which reports plain data back to the grader.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

EXPERIMENT_TAG = "experiment"  # cells the grader does not run (widgets, plots, timing)


def nbgrader_meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def is_check_cell(cell) -> bool:
    return bool(nbgrader_meta(cell).get("grade")) and cell.cell_type == "code" and not \
        nbgrader_meta(cell).get("solution")


def is_answer_cell(cell) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def _runs_when_grading(cell) -> bool:
    return (cell.cell_type == "code" and not is_check_cell(cell)
            and EXPERIMENT_TAG not in cell.get("metadata", {}).get("tags", []))


@dataclass
class Assembled:
    """The notebook to execute, and which of its cells probe which exercise."""

    notebook: nbformat.NotebookNode
    probes: dict[int, tuple[str, int, str]] = field(default_factory=dict)
    # cell index -> (check cell grade_id, exercise index within that cell, nonce)
    origins: list[str] = field(default_factory=list)  # per cell: "student", "given", "probe"


def with_cell_ids(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Give every cell the id nbformat 4.5 requires (cells copied from 4.4 notebooks lack one)."""
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    return nb


def _code(source: str, origin: str, grade_id: str | None = None):
    cell = new_code_cell(source)
    if grade_id:
        cell.metadata["nbgrader"] = {"grade_id": grade_id}
    cell.metadata["dlopt_origin"] = origin
    return cell


def student_cells(instructor: nbformat.NotebookNode, submission: nbformat.NotebookNode):
    """The code cells to run, in the student's order: (source, origin, grade_id) triples.

    - an answer cell (grade_id of an instructor answer cell): the student's source, every copy;
    - a cell the instructor wrote (grade_id known): the instructor's source, once;
    - a cell the student added: the student's source;
    - instructor cells the student deleted are put back where they were.
    """
    ours = {nbgrader_meta(c).get("grade_id"): (i, c) for i, c in enumerate(instructor.cells)
            if nbgrader_meta(c).get("grade_id")}
    answers = {gid for gid, (_, c) in ours.items() if is_answer_cell(c)}
    # A cell whose metadata was lost (some editors drop it) is still the instructor's cell when
    # its text is: recognise it by content, so it is neither run as student code nor flagged.
    by_text = {c.source.strip(): gid for gid, (_, c) in ours.items()
               if gid not in answers and c.source.strip()}
    placed: list[tuple[int, str, str, str | None]] = []  # (instructor index, source, origin, id)
    seen: set[str] = set()
    last_index = -1
    for cell in submission.cells:
        gid = nbgrader_meta(cell).get("grade_id") or by_text.get(cell.get("source", "").strip())
        if gid in answers:
            last_index = ours[gid][0]
            if cell.cell_type == "code":
                placed.append((last_index, cell.source, "student", gid))
            seen.add(gid)
        elif gid in ours:
            if gid in seen:
                continue
            seen.add(gid)
            last_index, original = ours[gid]
            if _runs_when_grading(original):
                placed.append((last_index, original.source, "given", gid))
        elif cell.cell_type == "code":
            placed.append((last_index, cell.source, "student", None))
    # Put back what the student deleted (except answers: a deleted answer stays deleted).
    for gid, (index, original) in sorted(ours.items(), key=lambda item: item[1][0]):
        if gid in seen or gid in answers or not _runs_when_grading(original):
            continue
        position = next((k for k, item in enumerate(placed) if item[0] > index), len(placed))
        placed.insert(position, (index, original.source, "given", gid))
    return [(source, origin, gid) for _, source, origin, gid in placed]


def probe_source(exercise: dict, nonce: str) -> str:
    request = {"nonce": nonce, "function": exercise["function"],
               "driver": exercise.get("driver"),
               "cases": [{"args": c["args"], "kwargs": c["kwargs"]} for c in exercise["cases"]]}
    return ("import dlopt.grading.probe as _dlopt_probe\n"
            f"_dlopt_probe.run({json.dumps(json.dumps(request))})")


def assemble(instructor: nbformat.NotebookNode, submission: nbformat.NotebookNode,
             exports: dict[str, list[dict]]) -> Assembled:
    """The notebook to grade: the student's code, then one probe cell per exported exercise.

    ``exports`` maps each check cell's grade_id to its exercises as plain data
    (:meth:`dlopt.grading.ExerciseData.to_plain`), from the instructor's run.
    """
    nb = new_notebook(metadata={"kernelspec": instructor.metadata.get("kernelspec", {})})
    result = Assembled(nb)
    for source, origin, gid in student_cells(instructor, submission):
        nb.cells.append(_code(source, origin, gid))
        result.origins.append(origin)
    for check_id, exercises in exports.items():
        for k, exercise in enumerate(exercises):
            nonce = secrets.token_hex(16)
            result.probes[len(nb.cells)] = (check_id, k, nonce)
            nb.cells.append(_code(probe_source(exercise, nonce), "probe", check_id))
            result.origins.append("probe")
    with_cell_ids(nb)
    return result
