"""The misconceptions table (MISCONCEPTIONS.md): every row points at cells and mistakes that exist.

A row names a misconception, the lesson and the markdown cell (grade_id) that corrects it, and
where it can be coded the exercise whose check catches it and the start of the named mistake's
message. Rows are checked only where their lesson folder exists in solutions/; a row of a lesson
still being written says "pending", and once the lesson exists "pending" is refused. The checks
read the notebooks' sources (the mistakes from their ``Mistake(...)`` calls, parsed with ast),
so they run no notebook.
"""

from __future__ import annotations

import ast
import functools
import re

import lesson_harness as harness
import pytest

TABLE = harness.ROOT / "MISCONCEPTIONS.md"
COLUMNS = ["#", "misconception", "the course's statement", "lesson", "cell", "exercise",
           "named mistake"]
NONE, PENDING = "—", "pending"
CURRICULUM_ITEMS = range(1, 16)  # the course's list: ../shared/curriculum.md, 15 items


def _rows() -> list[dict]:
    lines = [line for line in TABLE.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == COLUMNS, header
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == len(COLUMNS), line
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return rows


ROWS = _rows()


def _param(row):
    return pytest.param(row, id=row["#"])


@functools.cache
def _cells(lesson: str) -> dict:
    return {harness.grade_id(c): c for c in harness.read(lesson).cells}


@functools.cache
def _mistakes_by_function(lesson: str) -> dict[str, list[str]]:
    """The messages of every Mistake(...) of each check cell, by the function it checks."""
    found: dict[str, list[str]] = {}
    for cell in harness.read(lesson).cells:
        if not harness.nbgrader(cell)["grade"]:
            continue
        checked = re.findall(r"\w+\.check\((\w+)\)", cell.source)
        messages = [node.args[0].value for node in ast.walk(ast.parse(cell.source))
                    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Mistake"
                    and node.args and isinstance(node.args[0], ast.Constant)]
        for function in checked:
            found.setdefault(function, []).extend(messages)
    return found


def _exists(lesson: str) -> bool:
    return harness.notebook_path(lesson).exists()


def test_the_table_covers_the_curriculum_list():
    items = {int(re.match(r"\d+", row["#"]).group()) for row in ROWS}
    assert set(CURRICULUM_ITEMS) <= items, sorted(set(CURRICULUM_ITEMS) - items)
    ids = [row["#"] for row in ROWS]
    assert len(ids) == len(set(ids)), "row numbers are unique"


def test_every_row_names_a_misconception_and_the_correct_statement():
    for row in ROWS:
        assert row["misconception"] and row["the course's statement"], row["#"]
        assert re.fullmatch(r"\d\d_\w+", row["lesson"]), row


@pytest.mark.parametrize("row", [_param(r) for r in ROWS if not _exists(r["lesson"])])
def test_a_row_of_a_lesson_not_written_yet_is_pending(row):
    assert (row["cell"], row["exercise"], row["named mistake"]) == (PENDING,) * 3, row


@pytest.mark.parametrize("row", [_param(r) for r in ROWS if _exists(r["lesson"])])
def test_the_correcting_cell_exists_and_is_markdown(row):
    cells = _cells(row["lesson"])
    assert row["cell"] != PENDING, f"{row['#']}: {row['lesson']} exists, name its cell"
    assert row["cell"] in cells, f"{row['#']}: no cell {row['cell']!r} in {row['lesson']}"
    assert cells[row["cell"]].cell_type == "markdown", row["cell"]


@pytest.mark.parametrize("row", [_param(r) for r in ROWS if _exists(r["lesson"])])
def test_the_exercise_is_checked_in_that_lesson(row):
    exercise = row["exercise"]
    assert exercise != PENDING, f"{row['#']}: {row['lesson']} exists, name its exercise or —"
    if exercise == NONE:
        assert row["named mistake"] == NONE, row["#"]
    elif exercise.startswith("experiment_"):
        cell = _cells(row["lesson"]).get(exercise)
        assert cell is not None and harness.is_experiment(cell), exercise
        assert row["named mistake"] == NONE, row["#"]
    else:
        assert exercise in harness.graded_functions(row["lesson"]), (
            f"{row['#']}: {exercise} is not checked in {row['lesson']}")


@pytest.mark.parametrize("row", [_param(r) for r in ROWS if _exists(r["lesson"])
                                 and r["named mistake"] not in (NONE, PENDING)])
def test_the_named_mistake_is_a_message_of_that_exercise_check(row):
    text = re.fullmatch(r"`(.+)`", row["named mistake"])
    assert text, f"{row['#']}: write the mistake's message in backticks"
    messages = _mistakes_by_function(row["lesson"]).get(row["exercise"], [])
    assert any(m.startswith(text.group(1)) for m in messages), (
        f"{row['#']}: no mistake of {row['exercise']} starts with {text.group(1)!r}")
