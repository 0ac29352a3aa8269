"""Every lesson, in JupyterLab in headless Chromium: Run All, the widgets, nbgrader.

For each lesson in solutions/ (the instructor's source), and for the lessons of
STUDENT_COPIES in course/ (the student release):

- open it in JupyterLab, Run All (continuing past an unanswered exercise's failing check, as
  a student does, with Run Selected Cell and All Below), save, and read the saved notebook:
  every code cell ran; errors are only the NotImplementedError of unanswered stubs (course/),
  or none at all (solutions/);
- every widget output renders in the page (no "Error displaying widget", images decoded);
- solutions/ only: every control of every widget is changed once (sliders dragged, dropdowns,
  multiple selections and toggle buttons changed): a figure widget redraws in the kernel and
  the page then shows exactly the new PNG; any other widget changes what it shows;
- solutions/ of VALIDATED only: nbgrader's Validate button passes on the solved notebook (the
  button is the same for every lesson, and Validate runs the whole notebook again; that every
  solved notebook runs clean is tests/lessons/test_contract.py's job).

And the formgrader page lists every lesson as an assignment.

The student copies of the other lessons are not opened here: their widgets are the solutions'
classes, already driven above, and every student copy runs top to bottom in a kernel, with
its stubs' messages checked, in tests/lessons/test_contract.py. Two are: the first notebook
students open, and the lesson with the most explorers (also the one tests/compat opens in
the classic notebook).

Screenshots go to test-artifacts/browser/<test>/ (see README.md).
"""

from __future__ import annotations

import json
import time

import pytest

from .conftest import LESSONS
from .lab import Lesson, LessonError

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STUB_ERROR = "NotImplementedError"
VALIDATED = ["00_start_here"]
STUDENT_COPIES = ["00_start_here", "04_adaptive_optimizers"]


def errors(nb) -> list[tuple[int, str, str]]:
    return [(i, o.ename, o.evalue) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.outputs if o.output_type == "error"]


def unexecuted(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and c.source.strip() and c.execution_count is None]


def drive(lesson: Lesson, variant: str) -> dict:
    """Open, run, save and check one notebook; return what happened (kept as report.json)."""
    timings = {}
    started = time.monotonic()
    lesson.open()
    timings["open"] = time.monotonic() - started

    mark = time.monotonic()
    runs = lesson.run_all()
    timings["run_all"] = time.monotonic() - mark
    lesson.save()
    nb = lesson.saved_notebook()

    assert not unexecuted(nb), f"{lesson.path}: cells that never ran: {unexecuted(nb)}"
    found = errors(nb)
    if variant == "course":
        others = [e for e in found if e[1] != STUB_ERROR]
        assert not others, f"{lesson.path} raised more than {STUB_ERROR}: {others}"
        assert found, f"{lesson.path}: an untouched release should raise {STUB_ERROR}"
    else:
        assert not found, f"{lesson.path} raised: {found}"

    mark = time.monotonic()
    widgets = lesson.find_widgets()
    saved_views = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == len(saved_views), (
        f"{lesson.path}: {len(saved_views)} widget outputs saved, {len(widgets)} in the page")
    for widget in widgets:
        lesson.check_rendered(widget)
        lesson.screenshot(f"widget-{widget.index}", lesson.widget_node(widget.index))
    lesson.screenshot_notebook("notebook")

    for widget in widgets if variant == "solutions" else []:
        lesson.exercise(widget)
        lesson.screenshot(f"widget-{widget.index}-changed", lesson.widget_node(widget.index))
        if widget.figure and variant == "solutions":
            assert any(c.figure_changed for c in widget.changes), (
                f"{lesson.path}: widget {widget.index} (cell {widget.cell}): no control "
                f"changed the figure: {[c.describe() for c in widget.changes]}")
    timings["widgets"] = time.monotonic() - mark

    return {
        "path": lesson.path,
        "runs": runs,
        "errors": [list(e[:2]) for e in found],
        "widgets": [{"cell": w.cell, "figure": w.figure,
                     "controls": [{"kind": c.kind, "label": c.label, "before": c.before,
                                   "after": c.after, "redraws": c.redraws,
                                   "figure_changed": c.figure_changed, "fixed": c.fixed}
                                  for c in w.changes]}
                    for w in widgets],
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }


def run_lesson(page, lab, artifacts, variant: str, name: str, validate: bool) -> None:
    lesson = Lesson(page, lab, f"{variant}/{name}/{name}.ipynb", artifacts)
    report = {}
    try:
        report = drive(lesson, variant)
        if validate:
            mark = time.monotonic()
            report["validate"] = lesson.validate().strip()
            report["seconds"]["validate"] = round(time.monotonic() - mark, 1)
    except LessonError as error:
        lesson.failure_screenshot()
        pytest.fail(f"{lesson.path}: {error}", pytrace=False)
    except Exception:
        lesson.failure_screenshot()
        raise
    finally:
        console = getattr(page, "browser_test_console", [])
        (artifacts / "report.json").write_text(json.dumps(
            {**report, "page_errors": console}, indent=2))
        lesson.shutdown()


@pytest.mark.parametrize("lesson", [lesson for lesson in LESSONS if lesson in STUDENT_COPIES])
def test_student_lesson_in_jupyterlab(lesson, lab, page, artifacts):
    run_lesson(page, lab, artifacts, "course", lesson, validate=False)


@pytest.mark.parametrize("lesson", LESSONS)
def test_solved_lesson_in_jupyterlab(lesson, lab, page, artifacts):
    run_lesson(page, lab, artifacts, "solutions", lesson, validate=lesson in VALIDATED)


def test_formgrader_lists_every_lesson(lab, fresh_page, artifacts):
    """/formgrader (Manage Assignments) lists each lesson of solutions/ as an assignment."""
    page = fresh_page
    page.goto(lab.url("formgrader"), wait_until="domcontentloaded")
    # The table says "Loading, please wait..." until its script has fetched the assignments.
    page.wait_for_function(
        """() => { const t = document.querySelector('#main-table');
                   return !!t && !/Loading, please wait/.test(t.innerText)
                       && t.querySelectorAll('tr').length > 0; }""", timeout=60_000)
    page.screenshot(path=str(artifacts / "formgrader.png"), full_page=True)
    names = page.locator("#main-table tr td:first-child").evaluate_all(
        "cells => cells.map(c => c.innerText.trim())")
    missing = [lesson for lesson in LESSONS if lesson not in names]
    assert not missing, f"the formgrader does not list {missing}; its rows: {names}"
