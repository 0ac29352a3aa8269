"""The class report (``python -m autograder report``) in headless Chromium, from file://.

The page must be readable as a file mailed or copied anywhere: it loads, every figure (an
embedded PNG) decodes, its Content-Security-Policy and markup give no console error, and
nothing is requested outside the page. The results are hand-made (no grading), so the test
takes a few seconds; tests/autograder/test_report.py checks the counts.
"""

from __future__ import annotations

import pytest

from autograder.course import Course
from autograder.report import write_report
from autograder.results import CheckResult, ExerciseResult, SubmissionResult, write_result

pytestmark = [pytest.mark.browser, pytest.mark.slow]
LESSON = "01_activations"


def _result(student: str, k: int) -> SubmissionResult:
    """Student ``k`` of a small class: some pass, some hold a named mistake, one is flagged."""
    def exercise(function: str, ok: bool, mistake: str = "") -> ExerciseResult:
        cases = [{"label": label, "hidden": hidden, "passed": ok, "problem": "" if ok else "x",
                  "mistake": "" if ok else mistake} for label, hidden in (("a", False),
                                                                          ("h", True))]
        return ExerciseResult(function, ok, "✓" if ok else "✗", cases)

    grad = exercise("relu_grad", k % 3 == 0, "the gradient is 1 <b>everywhere</b>")
    relu = exercise("relu", k % 4 != 1)
    checks = [CheckResult("test_relu", 2.0, float(relu.passed + grad.passed), [relu, grad])]
    flags = ["code replaces a library function ('<img src=x onerror=alert(1)>')"] if k == 5 \
        else []
    return SubmissionResult(student, LESSON, checks[0].score, 2.0, checks, flags,
                            runtime_s=10.0 + k % 3 + (90.0 if k == 7 else 0.0))


def test_the_report_page_renders_from_file(tmp_path, fresh_page, artifacts):
    root = tmp_path / "root"
    (root / "solutions" / LESSON).mkdir(parents=True)
    (root / "solutions" / LESSON / f"{LESSON}.ipynb").write_text("{}")
    course = Course(root)
    for k in range(12):
        write_result(course, _result(f"student{k:02d}", k))
    html_path = write_report(course, LESSON, tmp_path / "reports")[0]

    page = fresh_page
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("request", lambda r: problems.append(f"request: {r.url}")
            if not r.url.startswith(("file://", "data:")) else None)
    page.goto(html_path.as_uri(), wait_until="load")
    page.screenshot(path=str(artifacts / "report.png"), full_page=True)

    assert "For the instructor" in page.inner_text("body")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({complete: e.complete, width: e.naturalWidth, "
               "height: e.naturalHeight}))")
    assert len(images) == 2, images
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in images), images
    assert page.evaluate("document.scripts.length") == 0
    # Markup in a flag or a message is shown as text, never as elements.
    assert page.locator("text=<img src=x onerror=alert(1)>").count() == 1
    assert page.locator("text=the gradient is 1 <b>everywhere</b>").count() >= 1
    assert page.locator("b, img[src='x']").count() == 0
    assert not problems, problems
