"""``lint``: check the instructor notebooks in solutions/ before they are released or graded.

Static checks (fast): every cell has a unique, stable nbgrader grade_id; every check cell
has hidden scenarios and ends in ``exercise.check(...)``; no check cell ends in a bare
boolean or number (nbgrader would read that as a partial score); randomness is seeded.
With ``run`` (the default), each lesson's notebook is also exported as the grader would
(see :mod:`autograder.reference`) to count, per exercise, the hidden scenarios and the
named mistakes, and to confirm that the solution agrees with its reference.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import nbformat

from autograder.assemble import is_answer_cell, is_check_cell, nbgrader_meta
from autograder.course import Course, UsageError

MIN_MISTAKES = 3
STABLE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # names, as in the code
UNSEEDED = [
    (re.compile(r"\bnp\.random\.(rand|randn|randint|random|normal|uniform|choice|permutation|"
                r"shuffle|seed)\("), "uses numpy's global random state; pass a seeded "
                                     "np.random.default_rng(SEED)"),
    (re.compile(r"default_rng\(\s*\)(?!\s*if\b)"),  # `default_rng() if rng is None` is a default
     "creates an unseeded generator: default_rng(SEED)"),
]


@dataclass
class Problem:
    lesson: str
    cell: str
    message: str

    def __str__(self) -> str:
        return f"solutions/{self.lesson}/{self.lesson}.ipynb: cell '{self.cell}': {self.message}"


def _ends_in_bare_value(source: str) -> bool:
    """True when the last statement is an expression nbgrader would score as a number."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    if not body or not isinstance(body[-1], ast.Expr):
        return False
    value = body[-1].value
    if isinstance(value, ast.Constant):
        return isinstance(value.value, (bool, int, float)) and value.value is not None
    return isinstance(value, (ast.Compare, ast.BoolOp, ast.BinOp, ast.UnaryOp))


def static_problems(course: Course, lesson: str) -> list[Problem]:
    nb = nbformat.read(course.source_notebook(lesson), as_version=4)
    problems, seen = [], {}
    for index, cell in enumerate(nb.cells):
        gid = nbgrader_meta(cell).get("grade_id")
        name = gid or f"#{index + 1}"
        if not gid:
            problems.append(Problem(lesson, name, "has no nbgrader grade_id"))
            continue
        if not STABLE_ID.match(gid) or re.fullmatch(r"cell-[0-9a-f]{6,}", gid):
            problems.append(Problem(lesson, name, "grade_id should be a descriptive name "
                                                  "(letters, digits, _)"))
        if gid in seen:
            problems.append(Problem(lesson, name, f"grade_id also used by cell #{seen[gid]}"))
        seen[gid] = index + 1
        if cell.cell_type != "code":
            continue
        if is_check_cell(cell):
            if nbgrader_meta(cell).get("points", 0) <= 0:
                problems.append(Problem(lesson, name, "a check cell must be worth points"))
            if "### BEGIN HIDDEN TESTS" not in cell.source or ".add_hidden(" not in cell.source:
                problems.append(Problem(lesson, name, "has no hidden scenarios "
                                                      "(add_hidden in a hidden-tests block)"))
            if not re.search(r"\.check\(\w+\)\s*$", cell.source.strip()):
                problems.append(Problem(lesson, name, "must end with exercise.check(function)"))
            if _ends_in_bare_value(cell.source):
                problems.append(Problem(lesson, name, "ends in a bare boolean or number, which "
                                                      "nbgrader would score as partial credit"))
        if is_check_cell(cell) or gid == "setup" or not is_answer_cell(cell):
            for pattern, message in UNSEEDED:
                if pattern.search(cell.source):
                    problems.append(Problem(lesson, name, message))
    return problems


def exported_problems(course: Course, lesson: str) -> list[Problem]:
    from autograder.reference import cached_reference, default_cache

    try:
        reference = cached_reference(course, lesson, default_cache(course))
    except UsageError as exc:
        return [Problem(lesson, "(whole notebook)", str(exc))]
    problems = []
    for check in reference.checks:
        for exercise in check.exercises:
            function = exercise["function"]
            hidden = sum(case["hidden"] for case in exercise["cases"])
            if hidden == 0:
                problems.append(Problem(lesson, check.grade_id,
                                        f"{function} has no hidden scenario"))
            if len(exercise["mistakes"]) < MIN_MISTAKES:
                problems.append(Problem(lesson, check.grade_id, (
                    f"{function} names {len(exercise['mistakes'])} mistake(s); "
                    f"at least {MIN_MISTAKES} are required")))
    return problems


def lint(course: Course, lessons: list[str] | None = None, *, run: bool = True) -> list[Problem]:
    lessons = [course.check_lesson(lesson) for lesson in (lessons or course.lessons())]
    problems = []
    for lesson in lessons:
        problems += static_problems(course, lesson)
        if run:
            problems += exported_problems(course, lesson)
    return problems
