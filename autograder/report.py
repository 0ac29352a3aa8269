"""``report``: what a class got wrong, from what ``grade`` recorded.

Scores per student (``export``) and one page per student (``feedback``) do not show an
instructor the class's picture: which exercises most students failed, and *which
misconception* they hold. The grader already knows it: :func:`dlopt.grading.judge` matches every
failing scenario against the exercise's named mistakes, and ``results.json`` keeps the match.
This module counts those matches over a lesson's graded submissions and writes, for the
instructor, one self-contained HTML page (figures as embedded PNGs drawn with matplotlib's Agg;
no script, nothing fetched), the same numbers as JSON, and the per-exercise and per-mistake
counts as CSV (which ``export --mistakes`` writes for every graded lesson, see
:mod:`autograder.export`).

It only reads: the lesson's ``results.json`` files (one per student, overwritten when a
submission is regraded, so only the latest grade counts) and the gradebook's students (those
without a graded submission are *missing*, as the CSV export scores them 0). It never runs
student code. Aggregating (:func:`build_report`, plain data in, plain data out) is kept apart
from reading and rendering, so it is tested on hand-made results.

The page is for the instructor. Per student it shows only what the gradebook already holds:
the ids of missing, flagged and unusually slow submissions, with their score and the grader's
flags; every such text is HTML-escaped, and the page's Content-Security-Policy forbids scripts.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from autograder.course import Course, UsageError
from autograder.results import SubmissionResult, atomic_write, graded_lessons, scan_results

#: Runtime outliers: above Q3 + FENCE * IQR (Tukey's "far out" fence) ...
FENCE = 3.0
#: ... computed only from this many timed submissions on (quartiles of fewer say little).
MIN_TIMED = 4
#: The page opens with the most common named mistakes of the lesson, at most this many.
TOP_MISTAKES = 5
CSV_COLUMNS = ("lesson", "check", "position", "exercise", "what", "mistake", "students",
               "graded", "share")
NOT_IMPLEMENTED = "is not implemented yet (it raised NotImplementedError)"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
COLORS = {"passed": "#1b7837", "named mistake": "#e08214", "no named mistake": "#b2182b",
          "not attempted": "#bdbdbd"}

# What the grader's flags (autograder.grade_one, autograder.suspicion) say, by kind.
FLAG_KINDS = (
    ("execution ", "did not run to the end"),
    ("cells hit the sandbox", "hit the sandbox's walls or limits"),
    ("output flood", "output flood"),
    ("code ", "suspicious code"),
)
FLAG_KINDS_INSIDE = (
    ("the probe's result was missing", "probe result missing or forged"),
    ("the grader could not compare", "grader error"),
)


# ---------------------------------------------------------------------------------------------
# The report, as plain data
# ---------------------------------------------------------------------------------------------
@dataclass
class MistakeCount:
    message: str  # the named mistake, as students saw it in their feedback
    students: int
    share: float  # of the graded submissions that have this exercise


@dataclass
class ExerciseStats:
    """One exercise of one check cell, over every graded submission that has it.

    ``graded = passed + not_attempted + failed_public + failed_hidden_only``. A failure is
    *public* when at least one public scenario failed (the student's own check said so), and
    *hidden only* when every public one passed. ``mistakes`` counts students per named mistake:
    a student counts for the mistake matched on the most of their failing scenarios (for
    each, when several tie); ``unexplained`` counts attempted failures where no failing
    scenario matched any named mistake.
    """

    grade_id: str
    position: int  # 1-based, in its check cell (a cell may check the same function twice)
    function: str
    graded: int = 0
    passed: int = 0
    not_attempted: int = 0  # the stub as released: every scenario raised NotImplementedError
    failed_public: int = 0
    failed_hidden_only: int = 0
    unexplained: int = 0
    mistakes: list[MistakeCount] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.graded - self.passed

    @property
    def pass_rate(self) -> float:
        return self.passed / self.graded if self.graded else 0.0

    @property
    def explained(self) -> int:
        return self.failed_public + self.failed_hidden_only - self.unexplained


@dataclass
class ScoreSummary:
    graded: int
    missing: int
    max_score: float
    mean: float | None = None
    median: float | None = None
    q1: float | None = None
    q3: float | None = None
    lowest: float | None = None
    highest: float | None = None
    zero: int = 0
    full: int = 0


@dataclass
class HistogramBin:
    label: str
    low: float
    high: float
    count: int


@dataclass
class Flagged:
    student_id: str
    score: float
    max_score: float
    kinds: list[str]
    flags: list[str]


@dataclass
class Runtimes:
    timed: int
    median: float | None = None
    q1: float | None = None
    q3: float | None = None
    fence: float | None = None  # Q3 + FENCE * IQR; None with fewer than MIN_TIMED timings
    outliers: list[dict] = field(default_factory=list)  # {"student_id", "runtime_s"}


@dataclass
class LessonReport:
    lesson: str
    generated: str
    students: int  # the gradebook's students, and anyone with a result
    summary: ScoreSummary
    histogram: list[HistogramBin]
    missing: list[str]  # no graded submission (not handed in, unreadable, grading failed)
    unfinished: list[str]  # in the gradebook, but results.json never written (batch killed)
    unreadable: list[str]  # a results.json this grader cannot read
    versions: int  # versions of the lesson (reference data, release) the results were graded by
    exercises: list[ExerciseStats]
    flagged: list[Flagged]
    runtimes: Runtimes

    def to_plain(self) -> dict:
        data = asdict(self)
        for plain, stats in zip(data["exercises"], self.exercises, strict=True):
            plain.update(failed=stats.failed, pass_rate=round(stats.pass_rate, 4),
                         explained=stats.explained)
        return data


def flag_kind(flag: str) -> str:
    """The kind of one of the grader's flags, for grouping them on the page."""
    for prefix, kind in FLAG_KINDS:
        if flag.startswith(prefix):
            return kind
    for words, kind in FLAG_KINDS_INSIDE:
        if words in flag:
            return kind
    return "other"


def _not_attempted(function: str, passed: bool, message: str, not_implemented: bool) -> bool:
    # Results written before ExerciseResult.not_implemented existed say it in the message.
    return not passed and (not_implemented or message.startswith(f"{function} {NOT_IMPLEMENTED}"))


def exercise_stats(results: Iterable[SubmissionResult]) -> list[ExerciseStats]:
    """Per exercise (in the order of the check cells): pass rate, public and hidden-only
    failures, named mistakes ranked by how many students made them, unexplained failures."""
    stats: dict[tuple[str, int], ExerciseStats] = {}
    mistakes: dict[tuple[str, int], Counter] = {}
    for result in results:
        for check in result.checks:
            for k, exercise in enumerate(check.exercises, start=1):
                key = (check.grade_id, k)
                entry = stats.setdefault(key, ExerciseStats(check.grade_id, k, exercise.function))
                counter = mistakes.setdefault(key, Counter())
                entry.graded += 1
                if exercise.passed:
                    entry.passed += 1
                    continue
                if _not_attempted(exercise.function, exercise.passed, exercise.message,
                                  exercise.not_implemented):
                    entry.not_attempted += 1
                    continue
                failing = [c for c in exercise.cases if not c.get("passed")]
                if failing and all(c.get("hidden") for c in failing):
                    entry.failed_hidden_only += 1
                else:
                    entry.failed_public += 1
                # The student's mistake is the one matched on the most failing scenarios
                # (all of them, tied): a scenario on which two mistakes give the same output
                # records only the first, so a lone match may just be a scenario that cannot
                # tell them apart.
                tally = Counter(c["mistake"] for c in failing if c.get("mistake"))
                named = {m for m, n in tally.items() if n == max(tally.values())}
                counter.update(named)
                if not named:
                    entry.unexplained += 1
    for key, entry in stats.items():
        entry.mistakes = [MistakeCount(message, n, round(n / entry.graded, 4))
                          for message, n in sorted(mistakes[key].items(),
                                                   key=lambda item: (-item[1], item[0]))]
    return list(stats.values())


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return float(q1), float(median), float(q3)


def score_summary(results: list[SubmissionResult], missing: int) -> ScoreSummary:
    """Mean, median, quartiles, lowest and highest, zero and full marks, over the graded."""
    max_score = max((r.max_score for r in results), default=0.0)
    summary = ScoreSummary(len(results), missing, max_score)
    if results:
        scores = [r.score for r in results]
        summary.q1, summary.median, summary.q3 = (round(v, 4) for v in _quartiles(scores))
        summary.mean = round(float(np.mean(scores)), 4)
        summary.lowest, summary.highest = min(scores), max(scores)
        summary.zero = sum(r.score <= 0 for r in results)
        summary.full = sum(r.score >= r.max_score - 1e-9 and r.max_score > 0 for r in results)
    return summary


def histogram(scores: list[float], max_score: float) -> list[HistogramBin]:
    """One bar per whole score when every score is whole and there are at most 40 of them;
    else ten equal bins over [0, max_score] (each holds its lower edge; the last, both)."""
    top = max([max_score, *scores], default=0.0)
    if all(float(s).is_integer() for s in [*scores, top]) and top <= 40:
        counts = Counter(int(s) for s in scores)
        return [HistogramBin(str(k), k - 0.5, k + 0.5, counts.get(k, 0))
                for k in range(int(top) + 1)]
    edges = np.linspace(0.0, top or 1.0, 11)
    counts = np.histogram(np.clip(scores, 0.0, top or 1.0), bins=edges)[0] if scores else \
        np.zeros(10, dtype=int)
    return [HistogramBin(f"{lo:.3g}–{hi:.3g}", round(float(lo), 4), round(float(hi), 4), int(n))
            for lo, hi, n in zip(edges[:-1], edges[1:], counts, strict=True)]


def runtimes(results: list[SubmissionResult]) -> Runtimes:
    """Quartiles of the recorded runtimes, and the submissions above Q3 + FENCE * IQR."""
    timed = [(r.student_id, r.runtime_s) for r in results if r.runtime_s is not None]
    found = Runtimes(len(timed))
    if len(timed) < MIN_TIMED:
        return found
    q1, median, q3 = _quartiles([t for _, t in timed])
    found.q1, found.median, found.q3 = round(q1, 3), round(median, 3), round(q3, 3)
    found.fence = round(q3 + FENCE * (q3 - q1), 3)
    found.outliers = [{"student_id": sid, "runtime_s": t}
                      for sid, t in sorted(timed, key=lambda item: (-item[1], item[0]))
                      if t > found.fence]
    return found


def build_report(lesson: str, results: list[SubmissionResult], students: Iterable[str] = (),
                 submitted: Iterable[str] = (), unreadable: Iterable[str] = ()) -> LessonReport:
    """The class report of ``lesson`` from its recorded results.

    ``students`` are the gradebook's students (a student with no result is missing);
    ``submitted`` those the gradebook holds a submission of ``lesson`` for (one with no
    result was being recorded when its batch stopped); ``unreadable`` the student folders
    whose results.json could not be read.
    """
    results = sorted(results, key=lambda r: r.student_id)
    graded = {r.student_id for r in results}
    unreadable = sorted(set(unreadable))
    roster = set(students) | graded | set(unreadable)
    missing = sorted(roster - graded)
    summary = score_summary(results, len(missing))
    versions = {(r.fingerprint_parts.get("reference"), r.fingerprint_parts.get("release"))
                for r in results if r.fingerprint_parts}
    flagged = [Flagged(r.student_id, r.score, r.max_score,
                       sorted({flag_kind(f) for f in r.flags}), list(r.flags))
               for r in results if r.flags]
    return LessonReport(
        lesson=lesson,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        students=len(roster), summary=summary,
        histogram=histogram([r.score for r in results], summary.max_score),
        missing=missing, unfinished=sorted(set(submitted) - graded), unreadable=unreadable,
        versions=len(versions), exercises=exercise_stats(results), flagged=flagged,
        runtimes=runtimes(results))


def gradebook_students(course: Course, lesson: str) -> tuple[set[str], set[str]]:
    """The gradebook's students, and those it holds a submission of ``lesson`` for.

    Read with sqlite, read-only, from nbgrader's tables (``student``, ``assignment``,
    ``submitted_assignment``): a report never writes the gradebook, and importing nbgrader
    would take longer than the whole report.
    """
    if not course.gradebook.exists():
        return set(), set()
    try:
        db = sqlite3.connect(f"{course.gradebook.resolve().as_uri()}?mode=ro", uri=True,
                             timeout=30)
        try:
            students = {row[0] for row in db.execute("SELECT id FROM student")}
            submitted = {row[0] for row in db.execute(
                "SELECT s.student_id FROM submitted_assignment s JOIN assignment a "
                "ON s.assignment_id = a.id WHERE a.name = ?", (lesson,))}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise UsageError(f"cannot read the gradebook {course.gradebook}: {exc}") from None
    return students, submitted


def lesson_report(course: Course, lesson: str) -> LessonReport:
    """Read ``lesson``'s results and the gradebook's students, and build the report."""
    results, unreadable = scan_results(course, lesson)
    if not results:
        raise UsageError(f"no graded submissions of {lesson}: run 'python -m autograder grade "
                         f"{lesson} --submissions DIR' first")
    students, submitted = gradebook_students(course, lesson)
    return build_report(lesson, results, students, submitted, unreadable)


# ---------------------------------------------------------------------------------------------
# The CSV of per-exercise and per-mistake counts
# ---------------------------------------------------------------------------------------------
def mistakes_rows(lesson: str, exercises: list[ExerciseStats]) -> list[tuple]:
    """Long-format rows (``CSV_COLUMNS``): per exercise, one row per count, then one per
    named mistake (``what`` = ``named_mistake``, the message in ``mistake``)."""
    rows = []
    for ex in exercises:
        counts = [("passed", ex.passed), ("failed", ex.failed),
                  ("not_attempted", ex.not_attempted), ("failed_public", ex.failed_public),
                  ("failed_hidden_only", ex.failed_hidden_only),
                  ("unexplained", ex.unexplained)]
        counts += [("named_mistake", m.students, m.message) for m in ex.mistakes]
        for what, n, *message in counts:
            share = f"{n / ex.graded:.4f}" if ex.graded else ""
            rows.append((lesson, ex.grade_id, ex.position, ex.function, what,
                         message[0] if message else "", n, ex.graded, share))
    return rows


def csv_text(rows: list[tuple]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Figures (matplotlib's Agg, no pyplot: no global state, no display)
# ---------------------------------------------------------------------------------------------
def _png_data_uri(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def histogram_figure(report: LessonReport) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3), layout="constrained")
    ax = fig.add_subplot()
    bins = report.histogram
    ax.bar(range(len(bins)), [b.count for b in bins], color="#4575b4", width=0.85)
    step = max(1, len(bins) // 20)
    ax.set_xticks(range(0, len(bins), step), [b.label for b in bins][::step],
                  rotation=0 if len(bins) <= 20 else 45, fontsize=8)
    ax.set_xlabel(f"score (out of {report.summary.max_score:g})")
    ax.set_ylabel("submissions")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.spines[["top", "right"]].set_visible(False)
    return _png_data_uri(fig)


def exercises_figure(report: LessonReport) -> str:
    from matplotlib.figure import Figure

    exercises = report.exercises
    fig = Figure(figsize=(7, 0.32 * len(exercises) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    names = [_exercise_name(ex, report.exercises) for ex in exercises]
    rows = range(len(exercises))
    left = np.zeros(len(exercises))
    for label, values in (
            ("passed", [ex.passed for ex in exercises]),
            ("named mistake", [ex.explained for ex in exercises]),
            ("no named mistake", [ex.unexplained for ex in exercises]),
            ("not attempted", [ex.not_attempted for ex in exercises])):
        share = np.array([v / ex.graded if ex.graded else 0.0
                          for v, ex in zip(values, exercises, strict=True)])
        ax.barh(rows, share, left=left, color=COLORS[label], label=label, height=0.75)
        left += share
    ax.set_yticks(rows, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    ax.set_xlabel("share of graded submissions")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=4, fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png_data_uri(fig)


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------
STYLE = """
body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem} h2{font-size:1.2rem;margin-top:2.2rem} h3{font-size:1rem;margin-bottom:.3rem}
.who{background:#fff4d6;border:1px solid #e0c46c;padding:.6rem .8rem}
.warn{background:#fde8e8;border:1px solid #d88;padding:.6rem .8rem}
table{border-collapse:collapse;margin:.4rem 0}
td,th{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.n{white-space:nowrap}
img{max-width:100%;height:auto} .muted{color:#666} .msg{white-space:pre-wrap}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _pct(n: int, of: int) -> str:
    return f"{n} ({n / of:.0%})" if of else str(n)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _exercise_name(ex: ExerciseStats, everyone: list[ExerciseStats]) -> str:
    twins = [o for o in everyone if o.grade_id == ex.grade_id and o.function == ex.function]
    return f"{ex.function} #{ex.position}" if len(twins) > 1 else ex.function


def render_html(report: LessonReport) -> str:
    """The instructor's page: self-contained, every text escaped, scripts forbidden."""
    s = report.summary
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(report.lesson)}: class report (instructor)</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{_e(report.lesson)} — what the class got wrong</h1>",
        "<p class='who'><strong>For the instructor; do not share with students.</strong> "
        "Class-wide counts from the grader's recorded results; per student, only what the "
        "gradebook already holds (ids of missing, flagged and slow submissions, their scores "
        "and the grader's flags). Hidden scenarios are counted, never shown.</p>",
        f"<p class='muted'>Generated {_e(report.generated)} by <code>python -m autograder "
        f"report {_e(report.lesson)}</code> from {s.graded} graded submission(s); only each "
        f"student's latest grading counts.</p>",
    ]
    warnings = []
    if report.versions > 1:
        warnings.append(
            f"These results were graded against {report.versions} versions of the lesson (its "
            f"reference data or release changed between gradings), so they are not all "
            f"comparable: run <code>python -m autograder grade {_e(report.lesson)} "
            f"--submissions DIR</code> again; it regrades the submissions graded by an older "
            f"version.")
    if report.unfinished:
        warnings.append(
            f"{len(report.unfinished)} submission(s) are in the gradebook without a recorded "
            f"result (a batch stopped while recording them): run the grade command again. "
            f"They count as missing here: {_e(', '.join(report.unfinished))}.")
    if report.unreadable:
        warnings.append(f"{len(report.unreadable)} results.json file(s) could not be read and "
                        f"count as missing: {_e(', '.join(report.unreadable))}.")
    parts += [f"<p class='warn'>{w}</p>" for w in warnings]

    top = sorted(((m, ex) for ex in report.exercises for m in ex.mistakes),
                 key=lambda item: (-item[0].share, -item[0].students))[:TOP_MISTAKES]
    if top:
        parts.append("<h2>The most common named mistakes</h2><ol>")
        parts += [f"<li><strong>{_pct(m.students, ex.graded)}</strong> of the graded "
                  f"submissions, in <code>{_e(_exercise_name(ex, report.exercises))}</code>: "
                  f"<span class='msg'>{_e(m.message)}</span></li>" for m, ex in top]
        parts.append("</ol>")

    parts.append("<h2>Scores</h2>")
    parts.append(
        "<table>"
        f"<tr><th>students</th><td class='n'>{report.students}</td></tr>"
        f"<tr><th>graded submissions</th><td class='n'>{s.graded}</td></tr>"
        f"<tr><th>missing submissions</th><td class='n'>{s.missing}</td></tr>"
        f"<tr><th>mean</th><td class='n'>{_num(s.mean)} / {s.max_score:g}</td></tr>"
        f"<tr><th>median</th><td class='n'>{_num(s.median)}</td></tr>"
        f"<tr><th>quartiles (Q1, Q3)</th><td class='n'>{_num(s.q1)}, {_num(s.q3)}</td></tr>"
        f"<tr><th>lowest, highest</th><td class='n'>{_num(s.lowest)}, {_num(s.highest)}</td>"
        f"</tr><tr><th>zero marks</th><td class='n'>{_pct(s.zero, s.graded)}</td></tr>"
        f"<tr><th>full marks</th><td class='n'>{_pct(s.full, s.graded)}</td></tr></table>"
        "<p class='muted'>Over graded submissions only; the gradebook's exports score a "
        "missing submission 0. Quartiles by linear interpolation.</p>")
    counts = ", ".join(f"{b.label}: {b.count}" for b in report.histogram if b.count)
    parts.append(f"<img src='{histogram_figure(report)}' alt='Histogram of the scores "
                 f"(score: submissions) {_e(counts)}' width='700' height='300'>")
    if report.missing:
        parts.append(f"<h3>Missing submissions ({len(report.missing)})</h3><p>No graded "
                     f"submission (not handed in, unreadable, or the grader failed on it; see "
                     f"the grade command's 'skipped' lines): "
                     f"{_e(', '.join(report.missing))}</p>")

    parts.append("<h2>Exercises</h2>")
    if report.exercises:
        height = int(100 * (0.32 * len(report.exercises) + 1.2))
        parts.append(f"<img src='{exercises_figure(report)}' alt='Per exercise: the share of "
                     f"graded submissions that passed, failed with a named mistake, failed "
                     f"with no named mistake, or left the stub' width='700' "
                     f"height='{height}'>")
    parts.append(
        "<table><tr><th>check</th><th>exercise</th><th class='n'>pass rate</th>"
        "<th class='n'>not attempted</th><th class='n'>failed a public scenario</th>"
        "<th class='n'>failed hidden only</th><th class='n'>no named mistake</th></tr>")
    for ex in report.exercises:
        parts.append(
            f"<tr><td>{_e(ex.grade_id)}</td><td>{_e(_exercise_name(ex, report.exercises))}</td>"
            f"<td class='n'>{ex.passed} / {ex.graded} ({ex.pass_rate:.0%})</td>"
            f"<td class='n'>{ex.not_attempted}</td><td class='n'>{ex.failed_public}</td>"
            f"<td class='n'>{ex.failed_hidden_only}</td><td class='n'>{ex.unexplained}</td></tr>")
    parts.append(
        "</table><p class='muted'>Pass rate over the graded submissions that have the exercise. "
        "<em>Not attempted</em>: the stub as released. <em>Failed a public scenario</em>: the "
        "student's own check showed the failure; <em>hidden only</em>: every public scenario "
        "passed. <em>No named mistake</em>: an attempted failure that matches none of the "
        "exercise's named mistakes on any failing scenario: when many students share one, a "
        "new named mistake is worth writing. A student counts for the named mistake matched on "
        "the most of their failing scenarios (each of them, when several tie): a scenario on "
        "which two mistakes give the same output names only the first.</p>")
    for ex in report.exercises:
        if ex.failed == ex.not_attempted:  # nothing to say beyond the table
            continue
        parts.append(f"<h3>{_e(ex.grade_id)}: {_e(_exercise_name(ex, report.exercises))} — "
                     f"{ex.failed} of {ex.graded} failed</h3>")
        if ex.mistakes:
            parts.append("<table><tr><th class='n'>students</th><th>named mistake, as "
                         "students saw it</th></tr>")
            parts += [f"<tr><td class='n'>{_pct(m.students, ex.graded)}</td>"
                      f"<td class='msg'>{_e(m.message)}</td></tr>" for m in ex.mistakes]
            parts.append("</table>")
        extra = []
        if ex.unexplained:
            extra.append(f"{ex.unexplained} failed with no named mistake")
        if ex.not_attempted:
            extra.append(f"{ex.not_attempted} did not attempt it")
        if extra:
            parts.append(f"<p>{'; '.join(extra)}.</p>")

    parts.append(f"<h2>Flagged for review ({len(report.flagged)})</h2>")
    if report.flagged:
        parts.append("<p class='muted'>Flags never change a score (the verdicts are decided "
                     "outside the student's kernel); they say where to look.</p><table><tr>"
                     "<th>student</th><th class='n'>score</th><th>kind</th><th>flags</th></tr>")
        for f in report.flagged:
            flags = "<br>".join(_e(x) for x in f.flags)
            parts.append(f"<tr><td>{_e(f.student_id)}</td><td class='n'>{f.score:g} / "
                         f"{f.max_score:g}</td><td>{_e(', '.join(f.kinds))}</td>"
                         f"<td class='msg'>{flags}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No submission was flagged.</p>")

    rt = report.runtimes
    parts.append(f"<h2>Runtime outliers ({len(rt.outliers)})</h2>")
    if rt.fence is None:
        parts.append(f"<p>{rt.timed} submission(s) have a recorded runtime; outliers need at "
                     f"least {MIN_TIMED}.</p>")
    else:
        parts.append(
            f"<p>An outlier took longer than Q3 + {FENCE:g} × IQR of this lesson's grading "
            f"times (Tukey's far-out fence; IQR = Q3 − Q1): here {rt.q3:.1f} s + {FENCE:g} × "
            f"{rt.q3 - rt.q1:.1f} s = <strong>{rt.fence:.1f} s</strong> (median "
            f"{rt.median:.1f} s over {rt.timed} timed submissions). A grading time includes "
            f"starting the kernel and running the student's cells: slow code, a cell that ran "
            f"into a time limit, or a busy grading machine.</p>")
        if rt.outliers:
            parts.append("<table><tr><th>student</th><th class='n'>seconds</th></tr>")
            parts += [f"<tr><td>{_e(o['student_id'])}</td><td class='n'>"
                      f"{o['runtime_s']:.1f}</td></tr>" for o in rt.outliers]
            parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(course: Course, lesson: str, out: Path | None = None) -> list[Path]:
    """``OUT/LESSON.html``, ``OUT/LESSON.json`` and ``OUT/LESSON_mistakes.csv`` (``OUT``:
    ``autograder/reports/`` by default); returns the paths written."""
    out = out if out is not None else course.grader_dir / "reports"
    if out.exists() and not out.is_dir():
        raise UsageError(f"'{out}' is a file; give a folder for the reports")
    report = lesson_report(course, lesson)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder '{out}': {exc.strerror}") from None
    paths = [out / f"{lesson}.html", out / f"{lesson}.json", out / f"{lesson}_mistakes.csv"]
    atomic_write(paths[0], render_html(report))
    atomic_write(paths[1], json.dumps(report.to_plain(), indent=1, ensure_ascii=False) + "\n")
    atomic_write(paths[2], csv_text(mistakes_rows(lesson, report.exercises)))
    return paths


def write_reports(course: Course, lessons: list[str], out: Path | None = None) -> list[Path]:
    """Reports of ``lessons`` (every graded lesson when empty)."""
    lessons = [course.check_lesson(lesson) for lesson in lessons] or graded_lessons(course)
    if not lessons:
        raise UsageError("no graded submissions yet: run 'python -m autograder grade LESSON "
                         "--submissions DIR' first")
    return [path for lesson in lessons for path in write_report(course, lesson, out)]
