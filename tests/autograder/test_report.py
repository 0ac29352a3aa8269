"""The class report (``python -m autograder report``, ``export --mistakes``).

The aggregation is tested on hand-made results (fast, exact, every corner: stubs, public and
hidden-only failures, several named mistakes per student, old results.json files, regraded and
half-graded batches, flags, runtimes). One slow test grades a synthetic class of lesson 01
(honest, blank, named mistakes in known proportions, an unexplained and a hidden-only failure,
a broken file, a cheat, a student with no submission) and checks the report's counts exactly.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from dataclasses import asdict

import pytest

from autograder.cli import main
from autograder.course import Course
from autograder.report import (
    FENCE,
    build_report,
    exercise_stats,
    flag_kind,
    histogram,
    render_html,
)
from autograder.results import (
    CheckResult,
    ExerciseResult,
    SubmissionResult,
    result_from_dict,
    write_result,
)

LESSON = "01_activations"
STUB = "is not implemented yet (it raised NotImplementedError): replace the `raise"
MISTAKE_A = "summed instead of averaged"
MISTAKE_B = "the sign is flipped"
MISTAKE_C = "transposed W"


def read_csv(path) -> list[dict]:
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))


def case(label: str, *, hidden: bool = False, ok: bool = True, mistake: str = "") -> dict:
    return {"label": label, "hidden": hidden, "passed": ok,
            "problem": "" if ok else "wrong values", "mistake": mistake}


def passing(function: str) -> ExerciseResult:
    return ExerciseResult(function, True, f"✓ {function}: all pass.",
                          [case("a"), case("b"), case("h", hidden=True)])


def stub(function: str, *, flagged_field: bool = True) -> ExerciseResult:
    cases = [dict(case(x, hidden=x == "h", ok=False), problem="raised NotImplementedError")
             for x in "abh"]
    return ExerciseResult(function, False, f"{function} {STUB} ...", cases, flagged_field)


def failing(function: str, *cases_: dict) -> ExerciseResult:
    return ExerciseResult(function, False, f"✗ {function}: ...", list(cases_))


def result(student: str, exercises: dict[str, list[ExerciseResult]], *, flags=(),
           runtime: float | None = 10.0, parts: dict | None = None) -> SubmissionResult:
    """A result whose score follows its exercises (each check worth 2 points, shared)."""
    checks = []
    for grade_id, items in exercises.items():
        share = 2.0 / len(items)
        checks.append(CheckResult(grade_id, 2.0, share * sum(e.passed for e in items), items))
    return SubmissionResult(student, LESSON, sum(c.score for c in checks), 2.0 * len(checks),
                            checks, list(flags),
                            fingerprint_parts=parts or {"reference": "r1", "release": "p1"},
                            runtime_s=runtime)


def class_of_results() -> list[SubmissionResult]:
    """Seven students over two checks (``test_loss``: ``loss``; ``test_layer``: ``forward``,
    then ``forward`` again in the same cell, as lesson 02 checks xavier_normal twice)."""
    ok = {"test_loss": [passing("loss")], "test_layer": [passing("forward"), passing("forward")]}
    return [
        result("honest", ok),
        result("blank", {"test_loss": [stub("loss")],
                         "test_layer": [stub("forward"), stub("forward", flagged_field=False)]}),
        # A and B, each on as many failing scenarios: the student counts for both.
        result("two_mistakes", {**ok, "test_loss": [failing(
            "loss", case("a", ok=False, mistake=MISTAKE_A), case("b", ok=False,
                                                                  mistake=MISTAKE_B),
            case("h", hidden=True))]}),
        # A on two scenarios, B on one (where both give the same output): A only.
        result("mistake_a", {**ok, "test_loss": [failing(
            "loss", case("a", ok=False, mistake=MISTAKE_A), case("b", ok=False,
                                                                  mistake=MISTAKE_A),
            case("h", hidden=True, ok=False, mistake=MISTAKE_B))]}, runtime=200.0),
        # Every public scenario passes: only a hidden one shows the mistake.
        result("hidden_only", {**ok, "test_loss": [failing(
            "loss", case("a"), case("b"), case("h", hidden=True, ok=False, mistake=MISTAKE_B))]},
               flags=["code replaces a library function (student cell 1: 'numpy.allclose =')"]),
        # Wrong, but like no named mistake (one scenario matched none, the other none either).
        result("unexplained", {"test_loss": [passing("loss")], "test_layer": [
            passing("forward"),
            failing("forward", case("a", ok=False), case("h", hidden=True, ok=False))]},
               runtime=None),
        result("mistake_c", {"test_loss": [passing("loss")], "test_layer": [
            failing("forward", case("a", ok=False, mistake=MISTAKE_C), case("b")),
            passing("forward")]}, runtime=12.0),
    ]


def test_exercise_stats_count_each_kind_of_failure_and_rank_the_named_mistakes():
    stats = {(s.grade_id, s.position): s for s in exercise_stats(class_of_results())}
    assert list(stats) == [("test_loss", 1), ("test_layer", 1), ("test_layer", 2)]
    loss = stats["test_loss", 1]
    assert (loss.function, loss.graded, loss.passed, loss.not_attempted, loss.failed_public,
            loss.failed_hidden_only, loss.unexplained) == ("loss", 7, 3, 1, 2, 1, 0)
    assert [(m.message, m.students, m.share) for m in loss.mistakes] == [
        (MISTAKE_A, 2, round(2 / 7, 4)), (MISTAKE_B, 2, round(2 / 7, 4))]
    assert loss.failed == 4 and loss.explained == 3 and loss.pass_rate == 3 / 7
    first, second = stats["test_layer", 1], stats["test_layer", 2]
    assert (first.passed, first.not_attempted, first.failed_public, first.unexplained) == (
        5, 1, 1, 0)
    assert [(m.message, m.students) for m in first.mistakes] == [(MISTAKE_C, 1)]
    # The second copy's stub was recorded before ExerciseResult.not_implemented existed:
    # the message says it.
    assert (second.passed, second.not_attempted, second.failed_public, second.unexplained,
            second.mistakes) == (5, 1, 1, 1, [])


def test_summary_missing_students_flags_and_runtime_outliers():
    report = build_report(LESSON, class_of_results(),
                          students={"honest", "absent", "broken"}, submitted={"honest"})
    s = report.summary
    scores = sorted(r.score for r in class_of_results())
    assert scores == [0.0, 2.0, 2.0, 2.0, 3.0, 3.0, 4.0]
    assert (s.graded, s.missing, s.max_score, s.zero, s.full) == (7, 2, 4.0, 1, 1)
    assert (s.mean, s.median, s.q1, s.q3, s.lowest, s.highest) == (
        round(16 / 7, 4), 2.0, 2.0, 3.0, 0.0, 4.0)
    assert report.students == 9 and report.missing == ["absent", "broken"]
    assert report.unfinished == [] and report.versions == 1
    assert [(b.label, b.count) for b in report.histogram] == [
        ("0", 1), ("1", 0), ("2", 3), ("3", 2), ("4", 1)]
    assert [(f.student_id, f.kinds) for f in report.flagged] == [
        ("hidden_only", ["suspicious code"])]
    rt = report.runtimes  # six timed: 10, 10, 10, 10, 12, 200 (one result has no runtime)
    assert (rt.timed, rt.q1, rt.median, rt.q3) == (6, 10.0, 10.0, 11.5)
    assert rt.fence == 11.5 + FENCE * 1.5
    assert rt.outliers == [{"student_id": "mistake_a", "runtime_s": 200.0}]


def test_too_few_timings_give_no_outliers_and_fractional_scores_get_ten_bins():
    few = [result(f"s{i}", {"c": [passing("f")]}, runtime=float(i)) for i in range(3)]
    assert build_report(LESSON, few).runtimes.fence is None
    bins = histogram([0.0, 1 / 3, 2.5, 10.0], 10.0)
    assert len(bins) == 10 and [b.count for b in bins] == [2, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    assert bins[0].label == "0–1"


def test_regraded_and_half_graded_batches():
    """Only each student's latest results.json exists (a regrade overwrites it); results
    graded against another version of the lesson are counted, and said; a student the
    gradebook holds a submission for but with no results.json is unfinished, and missing."""
    older = result("old", {"c": [passing("f")]}, parts={"reference": "r0", "release": "p1"})
    newer = result("new", {"c": [passing("f")]})
    report = build_report(LESSON, [older, newer], students={"old", "new", "killed"},
                          submitted={"old", "new", "killed"})
    assert report.versions == 2 and report.unfinished == ["killed"]
    assert report.missing == ["killed"] and report.summary.missing == 1
    page = render_html(report)
    assert "2 versions of the lesson" in page and "without a recorded result" in page


def test_flag_kinds_follow_the_graders_wording():
    assert flag_kind("execution timeout: the notebook ran past 300 s") == "did not run to the end"
    assert flag_kind("cells hit the sandbox's limits or walls (PermissionError)") == \
        "hit the sandbox's walls or limits"
    assert flag_kind("standardize: the probe's result was missing, duplicated or forged "
                     "(output tampering?)") == "probe result missing or forged"
    assert flag_kind("output flood: outputs were cut") == "output flood"
    assert flag_kind("code touches the grader's probe (student cell 2: 'RESULT_MIME')") == \
        "suspicious code"
    assert flag_kind("relu: the grader could not compare (ValueError())") == "grader error"
    assert flag_kind("something new") == "other"


def test_results_json_from_before_the_report_still_loads():
    new = asdict(class_of_results()[1])
    old = json.loads(json.dumps(new))
    del old["runtime_s"]
    for check in old["checks"]:
        for exercise in check["exercises"]:
            del exercise["not_implemented"]
    old["from_a_newer_grader"] = 1
    old["checks"][0]["exercises"][0]["also_newer"] = True
    loaded = result_from_dict(old)
    assert loaded.runtime_s is None
    assert not loaded.checks[0].exercises[0].not_implemented
    assert exercise_stats([loaded])[0].not_attempted == 1  # from the message
    assert result_from_dict(new) == class_of_results()[1]


# ---------------------------------------------------------------------------------------------
# The files and the commands, on a scratch course of hand-made results (no grading)
# ---------------------------------------------------------------------------------------------
HOSTILE_ID = "eve"
HOSTILE_FLAG = "code refers to the grader's files (student cell 1: '<script>alert(1)</script>')"


@pytest.fixture
def graded_course(tmp_path) -> Course:
    """A course root with lesson 01 (and an ungraded lesson 02) and the hand-made results."""
    root = tmp_path / "root"
    for lesson in (LESSON, "02_losses_backprop"):
        (root / "solutions" / lesson).mkdir(parents=True)
        (root / "solutions" / lesson / f"{lesson}.ipynb").write_text("{}")
    course = Course(root)
    results = class_of_results()
    results.append(result(HOSTILE_ID, {"test_loss": [passing("loss")]}, flags=[HOSTILE_FLAG]))
    for item in results:
        write_result(course, item)
    return course


def self_contained(page: str) -> None:
    assert not re.search(r"https?://", page), "the page refers to the network"
    assert "<script" not in page.lower()
    assert not re.search(r"\son\w+\s*=", page), "an inline event handler"
    assert re.search(r"Content-Security-Policy' content=\"default-src 'none'", page)
    assert "src='data:image/png;base64," in page
    assert not re.search(r"(src|href)=['\"](?!data:)", page), "a resource outside the page"


def test_report_command_writes_a_self_contained_page_json_and_csv(graded_course, tmp_path,
                                                                  capsys):
    out = tmp_path / "reports"
    assert main(["report", LESSON, "--out", str(out)], graded_course) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        f"{LESSON}.html", f"{LESSON}.json", f"{LESSON}_mistakes.csv"]
    assert capsys.readouterr().out.count("wrote ") == 3
    page = (out / f"{LESSON}.html").read_text(encoding="utf-8")
    self_contained(page)
    assert "For the instructor" in page[:3000]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "alert(1)</script>" not in page
    data = json.loads((out / f"{LESSON}.json").read_text(encoding="utf-8"))
    assert data["summary"]["graded"] == 8 and data["exercises"][0]["mistakes"][0] == {
        "message": MISTAKE_A, "students": 2, "share": 0.25}
    assert [f["student_id"] for f in data["flagged"]] == [HOSTILE_ID, "hidden_only"]
    rows = read_csv(out / f"{LESSON}_mistakes.csv")
    named = [(r["exercise"], r["position"], r["mistake"], r["students"], r["graded"])
             for r in rows if r["what"] == "named_mistake"]
    assert named == [("loss", "1", MISTAKE_A, "2", "8"), ("loss", "1", MISTAKE_B, "2", "8"),
                     ("forward", "1", MISTAKE_C, "1", "7")]
    assert {r["what"] for r in rows} == {"passed", "failed", "not_attempted", "failed_public",
                                         "failed_hidden_only", "unexplained", "named_mistake"}


def test_report_reads_the_gradebooks_students_and_every_graded_lesson(graded_course):
    """With no lesson named, every lesson with results; students from the gradebook (read
    only; nbgrader's tables) without a result are missing."""
    graded_course.grader_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(graded_course.gradebook)
    db.executescript("CREATE TABLE student (id VARCHAR(128) PRIMARY KEY);"
                     "CREATE TABLE assignment (id VARCHAR(32) PRIMARY KEY, name VARCHAR(128));"
                     "CREATE TABLE submitted_assignment (id VARCHAR(32), assignment_id "
                     "VARCHAR(32), student_id VARCHAR(128));"
                     "INSERT INTO student VALUES ('honest'), ('absent');"
                     "INSERT INTO assignment VALUES ('a1', '01_activations');"
                     "INSERT INTO submitted_assignment VALUES ('x', 'a1', 'honest');")
    db.commit()
    db.close()
    assert main(["report"], graded_course) == 0
    out = graded_course.grader_dir / "reports"
    assert sorted(p.name for p in out.iterdir()) == [
        f"{LESSON}.html", f"{LESSON}.json", f"{LESSON}_mistakes.csv"]  # 02 has no results
    data = json.loads((out / f"{LESSON}.json").read_text(encoding="utf-8"))
    assert data["missing"] == ["absent"] and data["summary"]["missing"] == 1


def test_export_mistakes_keeps_the_other_exports(graded_course, tmp_path):
    target = tmp_path / "mistakes.csv"
    assert main(["export", "--mistakes", str(target)], graded_course) == 0
    rows = read_csv(target)
    assert {r["lesson"] for r in rows} == {LESSON} and len(rows) == 3 * 6 + 3
    assert main(["export", "--csv", str(tmp_path / "g.csv"), "--mistakes",
                 str(tmp_path / "m.csv")], graded_course) == 0  # no gradebook: no rows
    assert (tmp_path / "g.csv").read_text() == (
        "student_id,lesson,score,max_score,submitted_at,late,penalty,final_score\n")


@pytest.mark.parametrize("args, words", [
    (["report", "99_nothing"], "unknown lesson '99_nothing'"),
    (["report", "02_losses_backprop"], "no graded submissions of 02_losses_backprop"),
    (["export", "--mistakes", "/"], "is a folder"),
    (["export", "--mistakes", "/nonexistent/folder/m.csv"], "does not exist"),
])
def test_bad_input_gets_one_line_and_exit_2(graded_course, capsys, args, words):
    assert main(args, graded_course) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and words in err, err


def test_out_must_be_a_folder_and_an_ungraded_course_is_refused(graded_course, tmp_path,
                                                                capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["report", LESSON, "--out", str(afile)], graded_course) == 2
    empty = Course(tmp_path / "empty")
    assert main(["report"], empty) == 2
    err = capsys.readouterr().err.splitlines()
    assert "is a file" in err[0] and "no graded submissions yet" in err[1]


# ---------------------------------------------------------------------------------------------
# A real class, graded (slow)
# ---------------------------------------------------------------------------------------------
PATCH_COMPARISONS = """
import numpy
numpy.allclose = lambda *a, **k: True
numpy.isclose = lambda a, b, **k: numpy.ones(numpy.shape(a), bool)
"""
RELU_GRAD = "return (np.asarray(x) > 0).astype(np.float64)"
RELU = "return np.maximum(np.asarray(x, dtype=np.float64), 0.0)"
SIGMOID_GRAD = "s = sigmoid(x)\n    return s * (1.0 - s)"
TANH_GRAD = "t = tanh(x)\n    return 1.0 - t**2"
GELU = "return x * 0.5 * (1.0 + erf(x / np.sqrt(2.0)))"
RELU_GRAD_IS_ONE = "\"ReLU's gradient is 1\" holds only for x > 0"


def edited(answers: dict[str, str], grade_id: str, old: str, new: str) -> dict[str, str]:
    assert old in answers[grade_id], (grade_id, old)
    return {**answers, grade_id: answers[grade_id].replace(old, new)}


@pytest.mark.slow
def test_a_graded_class_gives_exact_counts(tmp_path):
    """Eight graded submissions of lesson 01 (16 points, 15 exercises), a broken file and a
    student on the roster who handed nothing in."""
    import shutil

    from conftest import answer_sources, submission, write_submission

    from autograder import gradebook
    from autograder.course import REPO_ROOT

    root = tmp_path / "root"
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder / LESSON, root / folder / LESSON)
    course = Course(root)
    good = answer_sources(LESSON)
    grad_is_one = edited(good, "relu", RELU_GRAD, "return np.ones_like(x)")
    class_ = {
        "honest_a": good,
        "honest_b": good,
        "blank": None,  # the release, untouched
        "m_relu_1": grad_is_one,
        # the gradient is 1, and s * (1 - s) applied to the input
        "m_relu_2": edited(grad_is_one, "sigmoid", SIGMOID_GRAD, "return x * (1.0 - x)"),
        # (x >= 0) at the kink, and a relu that fails a hidden 3-D scenario only (no named
        # mistake gives zeros): relu and relu_grad share a cell
        "m_relu_3": edited(edited(good, "relu", RELU_GRAD,
                                  "return (np.asarray(x) >= 0).astype(np.float64)"),
                           "relu", RELU, "return np.zeros_like(np.asarray(x, dtype=float)) if "
                           "np.ndim(x) > 2 else np.maximum(np.asarray(x, dtype=float), 0.0)"),
        # 1 - tanh(x) forgot the square (named); gelu 1 % too large (no named mistake)
        "m_other": edited(edited(good, "tanh", TANH_GRAD, "return 1.0 - tanh(x)"),
                          "gelu", GELU, "return 1.01 * x * 0.5 * (1.0 + erf(x / np.sqrt(2.0)))"),
        "cheat": grad_is_one,  # and patches numpy's comparisons, in the kernel
    }
    subs = tmp_path / "subs"
    for student, answers in class_.items():
        extra = [PATCH_COMPARISONS] if student == "cheat" else []
        write_submission(subs, student, submission(LESSON, answers, extra_cells=extra))
    (subs / "broken").mkdir()
    (subs / "broken" / "submission.ipynb").write_text("this is not a notebook")
    assert main(["grade", LESSON, "--submissions", str(subs), "--workers", "2"], course) == 0
    gradebook.add_student(course, "absent")  # on the roster, handed nothing in

    out = tmp_path / "reports"
    assert main(["report", LESSON, "--out", str(out)], course) == 0
    data = json.loads((out / f"{LESSON}.json").read_text(encoding="utf-8"))
    assert data["students"] == 10 and data["missing"] == ["absent", "broken"]
    assert data["summary"] == {"graded": 8, "missing": 2, "max_score": 16.0, "mean": 13.0,
                               "median": 14.5, "q1": 14.0, "q3": 15.25, "lowest": 0.0,
                               "highest": 16.0, "zero": 1, "full": 2}
    assert {b["label"]: b["count"] for b in data["histogram"] if b["count"]} == {
        "0": 1, "14": 3, "15": 2, "16": 2}
    assert [(f["student_id"], f["kinds"]) for f in data["flagged"]] == [
        ("cheat", ["suspicious code"])]
    assert data["unfinished"] == [] and data["versions"] == 1
    assert data["runtimes"]["timed"] == 8 and data["runtimes"]["fence"] is not None

    by_name = {e["function"]: e for e in data["exercises"]}
    assert len(by_name) == 15

    def counts(name):
        e = by_name[name]
        return (e["graded"], e["passed"], e["not_attempted"], e["failed_public"],
                e["failed_hidden_only"], e["unexplained"], [m["students"] for m in e["mistakes"]])

    def named(name):
        return [m["message"] for m in by_name[name]["mistakes"]]

    assert counts("relu_grad") == (8, 3, 1, 4, 0, 0, [3, 1])
    assert named("relu_grad")[0].startswith(RELU_GRAD_IS_ONE)
    assert named("relu_grad")[1].startswith("(x >= 0) gives 1 at x = 0")
    assert counts("relu") == (8, 6, 1, 0, 1, 1, [])
    assert counts("sigmoid_grad") == (8, 6, 1, 1, 0, 0, [1])
    assert named("sigmoid_grad")[0].startswith("x * (1 - x)")
    assert counts("tanh_grad") == (8, 6, 1, 1, 0, 0, [1])
    assert named("tanh_grad")[0].startswith("1 - tanh(x) forgot")
    assert counts("gelu") == (8, 6, 1, 1, 0, 1, [])
    untouched = set(by_name) - {"relu_grad", "relu", "sigmoid_grad", "tanh_grad", "gelu"}
    assert all(counts(name) == (8, 7, 1, 0, 0, 0, []) for name in untouched)

    page = (out / f"{LESSON}.html").read_text(encoding="utf-8")
    self_contained(page)
    assert "3 (38%)" in page  # relu_grad's "gradient is 1": 3 of the 8 graded
    rows = read_csv(out / f"{LESSON}_mistakes.csv")
    assert [(r["exercise"], r["students"]) for r in rows if r["what"] == "named_mistake"] == [
        ("sigmoid_grad", "1"), ("tanh_grad", "1"), ("relu_grad", "3"), ("relu_grad", "1")]
    target = tmp_path / "mistakes.csv"
    assert main(["export", "--mistakes", str(target)], course) == 0
    assert list(read_csv(target)) == rows
