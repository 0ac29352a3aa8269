"""``feedback``: one self-contained HTML page per student and lesson.

Every piece of text that came from a submission is escaped, and the page forbids scripts
through its Content-Security-Policy, so nothing a student wrote can run in a reader's browser.
Hidden scenarios are named with their verdict; their inputs are never shown.
"""

from __future__ import annotations

import html
import os

import nbformat

from autograder.assemble import is_answer_cell, nbgrader_meta
from autograder.course import Course, UsageError
from autograder.results import SubmissionResult, load_results

STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem} h2{font-size:1.2rem;margin-top:2rem}
.pass{color:#17663a} .fail{color:#a11} .hidden{font-size:.8em;background:#eee;padding:0 .3em}
pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:left}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def render(result: SubmissionResult, answers: dict[str, str]) -> str:
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        f"<title>{_e(result.lesson)}: feedback for {_e(result.student_id)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{_e(result.lesson)} — feedback for {_e(result.student_id)}</h1>",
        f"<p><strong>Score: {result.score:g} / {result.max_score:g}</strong></p>",
        "<table><tr><th>check</th><th>score</th><th>result</th></tr>",
    ]
    for check in result.checks:
        ok = check.score >= check.points
        parts.append(f"<tr><td>{_e(check.grade_id)}</td><td>{check.score:g} / "
                     f"{check.points:g}</td><td class='{'pass' if ok else 'fail'}'>"
                     f"{'passed' if ok else 'not passed'}</td></tr>")
    parts.append("</table>")
    if result.notes:
        parts.append("<h2>Running your notebook</h2><ul>")
        parts += [f"<li>{_e(note)}</li>" for note in result.notes]
        parts.append("</ul>")
    for check in result.checks:
        parts.append(f"<h2>{_e(check.grade_id)}</h2>")
        for exercise in check.exercises:
            parts.append(f"<pre class='{'pass' if exercise.passed else 'fail'}'>"
                         f"{_e(exercise.message)}</pre><ul>")
            for case in exercise.cases:
                tag = " <span class='hidden'>hidden</span>" if case["hidden"] else ""
                verdict = ("<span class='pass'>✓</span>" if case["passed"] else
                           f"<span class='fail'>✗</span> {_e(case['problem'])}")
                mistake = (f"<br><em>Classic mistake: {_e(case['mistake'])}</em>"
                           if case["mistake"] else "")
                parts.append(f"<li>{_e(case['label'])}{tag}: {verdict}{mistake}</li>")
            parts.append("</ul>")
    student_errors = [e for e in result.cell_errors if e["origin"] == "student"]
    if student_errors:
        parts.append("<h2>Errors raised by your cells</h2><ul>")
        parts += [f"<li>{_e(e['ename'])}: {_e(e['evalue'])}</li>" for e in student_errors]
        parts.append("</ul>")
    if answers:
        parts.append("<h2>Your answers, as graded</h2>")
        for gid, source in answers.items():
            parts.append(f"<h3>{_e(gid)}</h3><pre>{_e(source)}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_feedback(course: Course, lesson: str) -> list:
    """Render a page for every graded submission of ``lesson``; return the paths written."""
    lesson = course.check_lesson(lesson)
    results = load_results(course, lesson)
    if not results:
        raise UsageError(f"no graded submissions of {lesson}: run 'python -m autograder grade "
                         f"{lesson} --submissions DIR' first")
    written = []
    for result in results:
        graded = course.autograded / result.student_id / lesson / f"{lesson}.ipynb"
        answers = {}
        if graded.exists():
            nb = nbformat.read(graded, as_version=4)
            answers = {nbgrader_meta(c)["grade_id"]: c.source for c in nb.cells
                       if is_answer_cell(c)}
        path = course.feedback / result.student_id / lesson / f"{lesson}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(render(result, answers), encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    return written
