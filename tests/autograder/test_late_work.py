"""Late work: when each submission was handed in, and the course's late policy at export."""

from __future__ import annotations

import csv
import os
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from conftest import answer_sources, submission, write_submission

from autograder.cli import main
from autograder.course import REPO_ROOT, Course, UsageError
from autograder.late import POLICY_FILE, LatePolicy, load_policy
from autograder.results import read_result
from autograder.timestamps import parse_time, read_table

LESSON = "00_start_here"
UTC = timezone.utc
DEADLINE = datetime(2027, 2, 1, 22, 59, tzinfo=UTC)  # 23:59 in Zurich (UTC+1 in February)
POLICY = f"""
timezone = "Europe/Zurich"
grace_minutes = 15
penalty = "per_day"
amount = 0.1
cap = 0.25

[deadlines]
"{LESSON}" = "2027-02-01 23:59"
"""


def make_course(tmp_path, policy: str | None = POLICY) -> Course:
    root = tmp_path / "root"
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder / LESSON, root / folder / LESSON)
    if policy is not None:
        (root / "autograder").mkdir()
        (root / "autograder" / POLICY_FILE).write_text(policy, encoding="utf-8")
    return Course(root)


# --- times ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("2027-02-01T23:59:00+01:00", datetime(2027, 2, 1, 22, 59, tzinfo=UTC)),
    ("2027-02-01 22:59:00.000000 UTC", datetime(2027, 2, 1, 22, 59, tzinfo=UTC)),  # nbgrader
    ("2027-02-01 22:59", datetime(2027, 2, 1, 22, 59, tzinfo=UTC)),  # no zone: UTC
    ("2027-02-01T22:59:00Z", datetime(2027, 2, 1, 22, 59, tzinfo=UTC)),
])
def test_times_are_read_as_utc(text, expected):
    assert parse_time(text) == expected


def test_a_table_with_a_bad_row_names_the_line(tmp_path):
    path = tmp_path / "times.csv"
    path.write_text("student_id,timestamp\nalice,2027-02-01 10:00\nbob,yesterday\n")
    with pytest.raises(UsageError, match=r"times.csv, line 3: 'yesterday' is not a time"):
        read_table(path)
    path.write_text("student,time\nalice,2027-02-01 10:00\n")
    with pytest.raises(UsageError, match="expected the columns student_id,timestamp"):
        read_table(path)


# --- the policy -------------------------------------------------------------------------------
def test_per_day_penalty_counts_started_days_after_the_grace_period_up_to_the_cap(tmp_path):
    policy = load_policy(make_course(tmp_path))
    assert policy.deadlines == {LESSON: DEADLINE}

    def judged(late: timedelta, score=8.0):
        return policy.judge(LESSON, DEADLINE + late, score, 10.0)

    assert judged(timedelta(minutes=14)).penalty == 0  # within the grace period
    on_time = judged(-timedelta(days=3))
    assert (on_time.late, on_time.final_score, on_time.describe()) == (False, 8.0, "")
    first_day = judged(timedelta(minutes=16))
    assert first_day.penalty == pytest.approx(1.0) and first_day.describe() == "16 min late"
    two_days = judged(timedelta(days=1, hours=2))
    assert two_days.penalty == pytest.approx(2.0) and two_days.describe() == "1 day 2 h late"
    assert judged(timedelta(days=9)).penalty == pytest.approx(2.5)  # cap: a quarter of 10
    assert judged(timedelta(days=9), score=1.0).final_score == 0.0  # never below 0
    assert policy.judge("01_activations", DEADLINE + timedelta(days=9), 8, 10).penalty == 0


@pytest.mark.parametrize("method, expected", [("per_hour", 3 * 0.1 * 10), ("zero", 8.0),
                                              ("none", 0.0)])
def test_other_penalties(method, expected):
    policy = LatePolicy({LESSON: DEADLINE}, penalty=method, amount=0.1)
    late = policy.judge(LESSON, DEADLINE + timedelta(hours=2, minutes=1), 8.0, 10.0)
    assert late.late and late.penalty == pytest.approx(expected)


@pytest.mark.parametrize("text, words", [
    ('penalty = "per_week"', "penalty must be one of per_day, per_hour, zero, none"),
    ('penalty = "per_day"', "penalty 'per_day' needs an amount"),
    ("amount = 2", "amount must be a number from 0 to 1"),
    ('timezone = "Mars/Olympus"', "unknown timezone 'Mars/Olympus'"),
    ("deadline = 3", "unknown setting(s) deadline"),
    ('[deadlines]\n"99_nothing" = "2027-01-01"', "deadline for unknown lesson '99_nothing'"),
    (f'[deadlines]\n"{LESSON}" = "soon"', f"deadline of {LESSON}: 'soon' is not a time"),
    ("penalty = ", "late_policy.toml: "),
])
def test_a_wrong_policy_is_one_clear_error(tmp_path, text, words):
    with pytest.raises(UsageError) as caught:
        load_policy(make_course(tmp_path, text))
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_no_policy_file_no_lateness(tmp_path):
    policy = load_policy(make_course(tmp_path, policy=None))
    assert not policy.judge(LESSON, DEADLINE + timedelta(days=30), 1.0, 1.0).late


# --- grading and exporting --------------------------------------------------------------------
def export(course, path):
    assert main(["export", "--csv", str(path)], course) == 0
    with open(path, newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


@pytest.mark.slow
def test_grade_records_when_work_was_handed_in_and_export_applies_the_policy(tmp_path):
    course = make_course(tmp_path)
    subs = tmp_path / "subs"
    solved = submission(LESSON, answer_sources(LESSON))
    for student in ("table", "nbgrader", "filetime"):
        write_submission(subs, student, solved)
    (subs / "nbgrader" / "timestamp.txt").write_text("2027-02-03 09:00:00.000000 UTC\n")
    late_file = DEADLINE + timedelta(hours=3)
    os.utime(subs / "filetime" / "submission.ipynb", (late_file.timestamp(),) * 2)
    table = tmp_path / "times.csv"
    table.write_text("student_id,timestamp\ntable,2027-02-01T23:00:00+01:00\n")

    assert main(["grade", LESSON, "--submissions", str(subs), "--timestamps", str(table)],
                course) == 0
    rows = export(course, tmp_path / "grades.csv")
    assert {s: (r["score"], r["submitted_at"], r["late"], r["penalty"], r["final_score"])
            for s, r in rows.items()} == {
        "table": ("1", "2027-02-01T22:00:00+00:00", "", "0", "1"),
        "nbgrader": ("1", "2027-02-03T09:00:00+00:00", "1 day 10 h late", "0.2", "0.8"),
        "filetime": ("1", "2027-02-02T01:59:00+00:00", "3 h late", "0.1", "0.9")}
    assert read_result(course, LESSON, "nbgrader").submitted_from == "timestamp.txt"
    assert read_result(course, LESSON, "filetime").submitted_from == "file modification time"

    # handed in again, unchanged, on time: the grade is kept, the new time recorded
    (subs / "nbgrader" / "timestamp.txt").write_text("2027-02-01 12:00:00 UTC\n")
    assert main(["grade", LESSON, "--submissions", str(subs), "--timestamps", str(table)],
                course) == 0
    row = export(course, tmp_path / "again.csv")["nbgrader"]
    assert (row["submitted_at"], row["late"], row["final_score"]) == (
        "2027-02-01T12:00:00+00:00", "", "1")
    canvas = tmp_path / "canvas.csv"
    assert main(["export", "--canvas", str(canvas)], course) == 0
    assert "filetime,,,filetime,,0.9" in canvas.read_text()
